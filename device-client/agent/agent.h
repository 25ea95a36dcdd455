/*
 * agent.h - private header of fleetmq-agent: structs and cross-file
 * functions, one banner per module (one .c per noun).
 *
 *   files      files.c         atomic writes, directory fsync, small reads
 *   proc       proc.c          run a command with a timeout
 *   config     agent_config.c  the config table, loading, semantic checks
 *   telemetry  telemetry.c     system health from /proc and statvfs
 *   settings   settings.c      config executor (config.file) and feature
 *                              executor (features.file): pure-ish, no MQTT
 *   handler    handler_ab.c    update handlers: built-in A/B directory
 *              handler_module.c and external update module (Mender style)
 *   update     update.c        update executor state machine (no MQTT)
 *   agent      agent.c         the daemon: library glue, worker, main()
 *
 * The executors (settings, update) take everything they need through small
 * interfaces (a fetcher for artifact chunks, a handler, a reporter), so the
 * unit tests drive them with fakes and the daemon with libfleetmq-client.
 *
 * Ownership: strings in structs below are owned by the struct unless marked
 * "borrowed"; every struct with owned members has a _free/_clear.
 */
#ifndef FLEETMQ_AGENT_H
#define FLEETMQ_AGENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "artifact_sig.h"
#include "fleetmq_config.h"

#define AGENT_VERSION "0.1.0"
#define AGENT_ERR_BYTES 512
#define AGENT_MAX_DETAILS 8

/* Execution outcome of an executor call (numerically equal to the
 * fleetmq.v1.ExecutionStatus values where they overlap). */
enum agent_outcome {
	AGENT_OUT_IN_PROGRESS = 2,     /* parked: deferred / awaiting approval */
	AGENT_OUT_SUCCEEDED = 3,
	AGENT_OUT_FAILED = 4,
	AGENT_OUT_REJECTED = 5,
	AGENT_OUT_INTERRUPTED = 100,   /* stopped (shutdown, crash simulation): no final status */
	AGENT_OUT_CANCELED = 101,      /* canceled by the operator: dropped, no final status */
	AGENT_OUT_NONE = 102,          /* nothing to do (no persisted update) */
};

/* Result of one executor call: status, step, failure type and up to
 * AGENT_MAX_DETAILS status details (key/value strings, fixed buffers). */
struct agent_result {
	enum agent_outcome outcome;
	char step[32];
	char failure_type[32];
	size_t n_details;
	char keys[AGENT_MAX_DETAILS][32];
	char values[AGENT_MAX_DETAILS][256];
};

void agent__result_init(struct agent_result *r);
/* Add (or replace) a detail; silently ignored beyond AGENT_MAX_DETAILS. */
void agent__result_detail(struct agent_result *r, const char *key, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
const char *agent__result_detail_get(const struct agent_result *r, const char *key);
const char *agent__outcome_name(enum agent_outcome o);

/* ================================================================
 * files (files.c)
 * ================================================================ */

/* Write data to path atomically: path.tmp, fsync, rename, fsync the
 * directory. mode for a new file. Returns 0 or -1 (err filled). */
int agent__write_atomic(const char *path, const void *data, size_t len, unsigned mode,
		char *err, size_t errlen);
/* Serialise json (formatted) and write it atomically. */
int agent__write_json_atomic(const char *path, const cJSON *json, char *err, size_t errlen);
/* fsync the directory containing path (dir=false) or path itself (dir=true). */
int agent__fsync_dir_of(const char *path);
int agent__fsync_dir(const char *dir);
/* Read a whole file (at most max bytes) into a new NUL-terminated buffer
 * (fm_free). Returns 0, -1 with errno (ENOENT when missing, EFBIG). */
int agent__read_file(const char *path, size_t max, char **out, size_t *len);
/* Parse a JSON file. Returns 0 (*out owned), 1 when the file does not
 * exist (*out NULL), -1 on read/parse error (err). */
int agent__read_json(const char *path, cJSON **out, char *err, size_t errlen);
/* mkdir -p with mode. 0 or -1 (errno). */
int agent__mkdir_p(const char *path, unsigned mode);
/* Remove path recursively (no symlink following). Missing = success. */
int agent__rm_rf(const char *path);
/* Copy src to dst (created / truncated, mode 0644) and fsync dst. */
int agent__copy_file(const char *src, const char *dst, char *err, size_t errlen);
/* Unlink and fsync the directory. Missing = success. */
int agent__unlink_durable(const char *path);

/* ================================================================
 * proc (proc.c)
 * ================================================================ */

/* Run `/bin/sh -c command` with "$1".. set from args (NULL-terminated, may
 * be NULL) and the extra environment entries "K=V" (NULL-terminated, may
 * be NULL), in its own process group. Kills the group after timeout_ms
 * (0 = no limit). stdout+stderr are captured: the first outlen-1 bytes go
 * to out (may be NULL), trailing white space removed. Returns the exit code (0..255), 128+signal if it
 * died of a signal, -1 if it could not be started, -2 on timeout. */
int agent__run_shell(const char *command, const char *const *args, const char *const *env,
		int timeout_ms, char *out, size_t outlen);

/* Replace line breaks and tabs in s by spaces (for one-line status
 * details); returns s. */
char *agent__flatten(char *s);

/* Run argv[0] (a path, no shell) with argv, same rules. */
int agent__run_argv(const char *const *argv, int timeout_ms, char *out, size_t outlen);

/* ================================================================
 * config (agent_config.c)
 * ================================================================ */

enum agent_update_policy {
	AGENT_POLICY_AUTO = 0,
	AGENT_POLICY_CRITICAL_ONLY = 1,
	AGENT_POLICY_ASK = 2,
};

enum agent_on_deadline {
	AGENT_DEADLINE_INSTALL = 0,
	AGENT_DEADLINE_REJECT = 1,
};

struct agent_config {
	/* broker */
	char *broker_host;
	long long broker_port;
	char *broker_password;
	char *broker_topic_prefix;
	long long broker_keepalive_s;
	long long broker_reconnect_min_ms;
	long long broker_reconnect_max_ms;
	bool tls_enabled;
	char *tls_ca_file;
	char *tls_cert_file;
	char *tls_key_file;
	bool tls_insecure;
	/* device */
	char *device_id;
	char *device_type;
	char *device_hw_revision;
	char *software_name;
	char *software_version;
	/* state */
	char *state_dir;
	/* update */
	char *update_slots_dir;
	char *update_handler;
	bool update_handler_reboots;
	char *update_health_check;
	long long update_health_timeout_ms;
	long long update_step_timeout_ms;
	struct fleetmq_strlist update_public_keys;
	long long update_chunk_bytes;
	long long update_persist_every_chunks;
	long long update_read_timeout_ms;
	int update_policy;             /* enum agent_update_policy */
	long long update_ask_deadline_s;
	int update_on_deadline;        /* enum agent_on_deadline */
	/* config executor */
	char *config_file;
	char *config_validate_cmd;
	char *config_reload_cmd;
	long long config_cmd_timeout_ms;
	/* telemetry */
	long long telemetry_interval_ms;
	char *telemetry_app_metrics_file;
	/* features */
	char *features_file;
	/* log */
	int log_level;                 /* 0 error .. 3 debug */
};

extern const struct fleetmq_cfg_option agent__config_table[];
extern const size_t agent__config_table_size;

/* Load and validate (table + semantic checks, see agent_config.c) the YAML
 * file into cfg (zeroed or freed before). Errors as
 * "<file>:<line>: <key>: <reason>" in err. Returns FLEETMQ_OK or a status;
 * cfg holds nothing to free after an error. */
int agent__config_load(const char *path, struct agent_config *cfg, char *err, size_t errlen);
/* Same from a buffer (name used in messages; key lines found in buf). */
int agent__config_load_buffer(const char *buf, size_t len, const char *name, struct agent_config *cfg,
		char *err, size_t errlen);
void agent__config_free(struct agent_config *cfg);
/* 1-based line of dotted key in YAML text buf (nested or flat), 0 if absent. */
int agent__config_key_line(const char *buf, size_t len, const char *key);
const char *agent__policy_name(int policy);
/* "auto" / "critical-only" / "ask" -> policy; -1 if unknown. */
int agent__policy_parse(const char *s);

/* ================================================================
 * telemetry (telemetry.c)
 * ================================================================ */

struct agent_cpu_times {
	uint64_t busy, total;
	bool valid;
};

struct agent_sysinfo {
	double cpu_percent;            /* -1 = unknown (first sample) */
	double mem_total_bytes, mem_available_bytes, mem_used_percent;
	double disk_total_bytes, disk_free_bytes, disk_used_percent;
	double uptime_s;
	double net_rx_bytes, net_tx_bytes;   /* all interfaces but lo */
	double load1;
};

/* Pure parsers of /proc texts. Return 0 or -1 if the text is unusable. */
int agent__parse_proc_stat(const char *text, struct agent_cpu_times *out);
int agent__parse_meminfo(const char *text, double *total_bytes, double *available_bytes);
int agent__parse_net_dev(const char *text, double *rx_bytes, double *tx_bytes);
/* cpu percent between two samples (-1 if unknown). */
double agent__cpu_percent(const struct agent_cpu_times *prev, const struct agent_cpu_times *now);

/* Sample the system (reads /proc under proc_root, statvfs of disk_path).
 * prev holds the previous CPU times and is updated. Never writes files. */
void agent__sysinfo_sample(const char *proc_root, const char *disk_path, struct agent_cpu_times *prev,
		struct agent_sysinfo *out);

/* Read "name value" lines (application metrics) from path into names /
 * values (at most cap; names are copied into fixed 64-byte slots). Lines
 * starting with '#' and malformed lines are skipped. Returns the count. */
size_t agent__read_app_metrics(const char *path, char (*names)[64], double *values, size_t cap);

/* ================================================================
 * settings (settings.c): config and feature executors
 * ================================================================ */

struct agent_settings {
	/* borrowed from the config */
	const char *config_file;       /* JSON object of key/values */
	const char *validate_cmd;      /* NULL/"" = none */
	const char *reload_cmd;        /* NULL/"" = none */
	int cmd_timeout_ms;
	const char *features_file;     /* JSON {"<name>": true|false} */
};

/* Apply a config job document {"set":{k:v}, "unset":[k]} (see settings.c
 * for the file format and the validate/reload protocol). On success
 * *applied (may be NULL) receives the whole new config object (caller
 * cJSON_Deletes). Fills r: SUCCEEDED, FAILED (validate/reload/IO, old file
 * kept) or REJECTED (bad document). */
void agent__config_apply(const struct agent_settings *s, const cJSON *doc, cJSON **applied,
		struct agent_result *r);
/* Read the current config object (empty object if the file is missing);
 * NULL on a read/parse error. */
cJSON *agent__config_read(const struct agent_settings *s, char *err, size_t errlen);

/* Apply a feature document {"disable":[..], "enable":[..]} to
 * features_file. *applied receives the whole feature map. Same r rules. */
void agent__features_apply(const struct agent_settings *s, const cJSON *doc, cJSON **applied,
		struct agent_result *r);
/* Set features from a {"name": bool} map (desired.features). */
void agent__features_apply_map(const struct agent_settings *s, const cJSON *map, cJSON **applied,
		struct agent_result *r);
/* The persisted feature map (empty object if none); NULL on error. */
cJSON *agent__features_read(const struct agent_settings *s, char *err, size_t errlen);

/* ================================================================
 * handler (handler_ab.c, handler_module.c)
 * ================================================================ */

/* Update handler steps; each returns 0 = ok, otherwise failure (err).
 * hstate is the handler's own JSON object inside update-state.json: the
 * executor persists it before every step, so what install records there
 * (e.g. which slot was targeted) survives a crash. */
struct agent_handler_ops {
	int (*install)(void *ctx, const char *payload, const struct fleetmq_artifact_meta *m, cJSON *hstate,
			char *err, size_t errlen);
	int (*reboot)(void *ctx, const char *payload, cJSON *hstate, char *err, size_t errlen);
	int (*health)(void *ctx, const char *payload, cJSON *hstate, char *err, size_t errlen);
	int (*commit)(void *ctx, const char *payload, cJSON *hstate, char *err, size_t errlen);
	int (*rollback)(void *ctx, const char *payload, cJSON *hstate, char *err, size_t errlen);
	/* Installed version into buf ("" if unknown). May be NULL. */
	void (*current_version)(void *ctx, char *buf, size_t size);
};

/* Return value of a (test) handler step that simulates a crash: the
 * executor returns AGENT_OUT_INTERRUPTED at once, persisting nothing more. */
#define AGENT_HANDLER_CRASH (-999)

struct agent_handler {
	const struct agent_handler_ops *ops;
	void *ctx;
	bool reboots;                  /* Reboot really restarts the device */
};

/* Built-in A/B directory handler: slots_dir/a, slots_dir/b and the symlink
 * slots_dir/current. health_cmd (may be NULL/"") runs with timeout. */
struct agent_ab_handler {
	char *slots_dir;
	char *health_cmd;
	int health_timeout_ms;
};
int agent__ab_init(struct agent_ab_handler *h, const char *slots_dir, const char *health_cmd, int health_timeout_ms,
		char *err, size_t errlen);
void agent__ab_clear(struct agent_ab_handler *h);
extern const struct agent_handler_ops agent__ab_ops;
/* Current slot name ("a"/"b") into buf; "" if the link is missing. */
void agent__ab_current_slot(const struct agent_ab_handler *h, char *buf, size_t size);

/* External update module: `<path> <Step> <payload> <state-dir>`. */
struct agent_module_handler {
	char *path;
	char *work_dir;                /* <state_dir>/update-module */
	char *health_cmd;              /* run after the module's HealthCheck, may be NULL */
	int health_timeout_ms;
	int step_timeout_ms;
	char *version_file;            /* <state_dir>/installed-version */
};
int agent__module_init(struct agent_module_handler *h, const char *path, const char *state_dir,
		const char *health_cmd, int health_timeout_ms, int step_timeout_ms, char *err, size_t errlen);
void agent__module_clear(struct agent_module_handler *h);
extern const struct agent_handler_ops agent__module_ops;

/* ================================================================
 * update (update.c)
 * ================================================================ */

/* Steps, in order; persisted by name in update-state.json. */
enum agent_update_step {
	UPD_NONE = 0,
	UPD_AWAITING,      /* ask policy: waiting for approval (deadline persisted) */
	UPD_DOWNLOAD,
	UPD_VERIFY,
	UPD_INSTALL,
	UPD_REBOOT,
	UPD_HEALTH,
	UPD_COMMIT,
	UPD_ROLLBACK,
};
const char *agent__update_step_name(enum agent_update_step s);

/* Chunk source. Returns 0 with *got bytes (0 only at the end) and
 * *total_size; a positive value for a transient failure (retried after a
 * pause until should_stop), a negative value for a permanent one (the
 * update FAILS with err), AGENT_HANDLER_CRASH to simulate a crash. */
struct agent_fetcher {
	int (*read)(void *ctx, const char *artifact, uint64_t offset, uint8_t *buf, uint32_t len,
			uint32_t *got, uint64_t *total_size, char *err, size_t errlen);
	void *ctx;
};

/* Progress reports (IN_PROGRESS): step, percent (-1 = none), details.
 * final: called exactly once per final outcome (SUCCEEDED, FAILED,
 * REJECTED) of an update call, BEFORE the persisted state is deleted; it
 * must make the report durable before returning. Either may be NULL. */
struct agent_reporter {
	void (*progress)(void *ctx, const char *job_id, const struct agent_result *r, int percent);
	void (*final)(void *ctx, const char *job_id, const struct agent_result *r);
	void *ctx;
};

struct agent_update_env {
	const char *state_dir;         /* borrowed */
	const char *device_type;
	const char *hw_revision;
	const char *fallback_version;  /* when the handler knows no version */
	const struct fleetmq_sig_keyring *keys;
	struct agent_handler handler;
	struct agent_fetcher fetcher;
	struct agent_reporter reporter;
	int policy;                    /* enum agent_update_policy, read at every evaluation */
	uint64_t ask_deadline_ms;
	int on_deadline;               /* enum agent_on_deadline */
	uint32_t chunk_bytes;
	uint32_t persist_every_chunks;
	int retry_pause_ms;            /* pause between transient fetch failures */
	/* optional hooks (NULL = never / wall clock) */
	bool (*should_stop)(void *ctx);     /* shutdown: leave the update resumable */
	bool (*canceled)(void *ctx, const char *job_id);
	uint64_t (*now_ms)(void *ctx);
	void *hook_ctx;
};

/* Paths inside state_dir. */
#define AGENT_UPDATE_STATE_FILE "update-state.json"
#define AGENT_UPDATE_PAYLOAD_FILE "update-payload"
#define AGENT_UPDATE_APPROVAL_FILE "update-approval"

/* Start or continue update job job_id with its document (JSON text): if
 * update-state.json holds the same job, continue from its persisted step;
 * otherwise run the pre-checks and start. Fills r with the outcome:
 * IN_PROGRESS (parked: step "deferred" or "awaiting-approval"; call again
 * later), SUCCEEDED, FAILED, REJECTED, INTERRUPTED or CANCELED. */
void agent__update_run(struct agent_update_env *env, const char *job_id, const char *doc_json,
		struct agent_result *r);

/* Crash recovery at startup: continue the persisted update, if any
 * (download resumes, verify/install redo, a restart after the switch and
 * before commit rolls back unless an expected reboot, commit redoes).
 * *job_id receives the job id (fm_free) or NULL. r->outcome NONE when
 * there is nothing persisted. */
void agent__update_resume(struct agent_update_env *env, char **job_id, struct agent_result *r);

/* Job id and step of the persisted update (without acting on it).
 * Returns 0 and sets *job_id (fm_free) / *step, 1 if none, -1 on error. */
int agent__update_peek(const char *state_dir, char **job_id, enum agent_update_step *step);

/* Drop the persisted update (payload and state), e.g. after a cancel. */
void agent__update_forget(const char *state_dir);

/* The approval file: "approve <job>" or "reject <job>" lines. Returns 1
 * approve, -1 reject, 0 nothing for this job. Consumes (deletes) the file
 * when it names job_id. */
int agent__update_read_approval(const char *state_dir, const char *job_id);

/* Installed version according to the handler, else the fallback. */
void agent__update_current_version(const struct agent_update_env *env, char *buf, size_t size);

#endif
