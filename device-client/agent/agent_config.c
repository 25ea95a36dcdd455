/*
 * agent_config.c - fleetmq-agent configuration: the one table of keys
 * (type, default, range, help) that drives YAML parsing, validation,
 * --print-config and the docs (common/fleetmq_config.h does the generic
 * work), plus the checks a table cannot express (identifier syntax,
 * readable key files, executable handler, cross-key rules), reported in the
 * same "<file>:<line>: <key>: <reason>" form.
 *
 * Paths left empty default to files under state_dir (resolved after
 * loading, so --print-config shows the effective values):
 *   update.slots_dir -> <state_dir>/slots
 *   config.file      -> <state_dir>/config.json
 *   features.file    -> <state_dir>/features.json
 *
 * Must never: touch the filesystem beyond reading the config file, the key
 * files and stat()ing the handler; print (errors go to the caller).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "agent.h"
#include "fleetmq_alloc.h"
#include "fleetmq_status.h"

#define OFF(f) offsetof(struct agent_config, f)
#define CFG_MAX_FILE_BYTES (1024u * 1024u)

static const char *const policy_choices[] = { "auto", "critical-only", "ask", NULL };
static const char *const deadline_choices[] = { "install", "reject", NULL };
static const char *const log_choices[] = { "error", "warning", "info", "debug", NULL };

const struct fleetmq_cfg_option agent__config_table[] = {
	/* broker */
	{ "broker.host", FM_CFG_STRING, "localhost", 0, 0, NULL, OFF(broker_host), 0, NULL,
		"Host name or address of the MQTT broker running the fleetmq plugin." },
	{ "broker.port", FM_CFG_INT, "1883", 1, 65535, NULL, OFF(broker_port), 0, NULL,
		"TCP port of the broker (8883 is usual with TLS)." },
	{ "broker.password", FM_CFG_STRING, NULL, 0, 0, NULL, OFF(broker_password), 0, NULL,
		"MQTT password; the username is always device.id. ~ = none." },
	{ "broker.topic_prefix", FM_CFG_STRING, "fleet", 0, 0, NULL, OFF(broker_topic_prefix), 0, NULL,
		"Topic prefix configured in the plugin (topic_prefix)." },
	{ "broker.keepalive_s", FM_CFG_INT, "60", 5, 3600, NULL, OFF(broker_keepalive_s), 0, "s",
		"MQTT keepalive; bounds how fast a dead link is noticed." },
	{ "broker.reconnect_min_ms", FM_CFG_INT, "1000", 10, 600000, NULL, OFF(broker_reconnect_min_ms), 0, "ms",
		"First reconnect delay; doubles per failure (with jitter) up to broker.reconnect_max_ms." },
	{ "broker.reconnect_max_ms", FM_CFG_INT, "60000", 10, 3600000, NULL, OFF(broker_reconnect_max_ms), 0, "ms",
		"Longest reconnect delay." },
	{ "broker.tls.enabled", FM_CFG_BOOL, "false", 0, 0, NULL, OFF(tls_enabled), 0, NULL,
		"Connect with TLS." },
	{ "broker.tls.ca_file", FM_CFG_STRING, NULL, 0, 0, NULL, OFF(tls_ca_file), 0, NULL,
		"PEM CA bundle that signed the broker's certificate; ~ = system default." },
	{ "broker.tls.cert_file", FM_CFG_STRING, NULL, 0, 0, NULL, OFF(tls_cert_file), 0, NULL,
		"Client certificate (PEM) for certificate authentication; its CN must be device.id." },
	{ "broker.tls.key_file", FM_CFG_STRING, NULL, 0, 0, NULL, OFF(tls_key_file), 0, NULL,
		"Private key of broker.tls.cert_file (PEM); ~ = inside the certificate file." },
	{ "broker.tls.insecure", FM_CFG_BOOL, "false", 0, 0, NULL, OFF(tls_insecure), 0, NULL,
		"Do not verify the broker's certificate (testing only)." },
	/* device */
	{ "device.id", FM_CFG_STRING, NULL, 0, 0, NULL, OFF(device_id), FM_CFG_REQUIRED, NULL,
		"Device id = MQTT client id = username: 1-128 bytes, no '/', '+', '#' or control characters." },
	{ "device.type", FM_CFG_STRING, NULL, 0, 0, NULL, OFF(device_type), FM_CFG_REQUIRED, NULL,
		"Device type (product); update artifacts must list it in deviceTypes." },
	{ "device.hw_revision", FM_CFG_STRING, "", 0, 0, NULL, OFF(device_hw_revision), 0, NULL,
		"Hardware revision; checked against an artifact's hwRevisions." },
	{ "device.software_name", FM_CFG_STRING, "firmware", 0, 0, NULL, OFF(software_name), 0, NULL,
		"Name of the software the update executor installs (Hello software list, reported.software)." },
	{ "device.software_version", FM_CFG_STRING, "0.0.0", 0, 0, NULL, OFF(software_version), 0, NULL,
		"Factory version, used until an update handler knows the installed version." },
	/* state */
	{ "state_dir", FM_CFG_STRING, "/var/lib/fleetmq-agent", 0, 0, NULL, OFF(state_dir), 0, NULL,
		"Directory of the agent's persistent state (update step and download, shadow version, job outbox)." },
	/* update */
	{ "update.slots_dir", FM_CFG_STRING, "", 0, 0, NULL, OFF(update_slots_dir), 0, NULL,
		"Built-in A/B handler: directory holding slots a/, b/ and the 'current' symlink; \"\" = <state_dir>/slots." },
	{ "update.handler", FM_CFG_STRING, "", 0, 0, NULL, OFF(update_handler), 0, NULL,
		"Update module executable, run as '<handler> Install|Reboot|HealthCheck|Commit|Rollback <artifact-file> <state-dir>' "
		"(exit 0 = ok); \"\" = built-in A/B directory handler." },
	{ "update.handler_reboots", FM_CFG_BOOL, "false", 0, 0, NULL, OFF(update_handler_reboots), 0, NULL,
		"The handler's Reboot step really reboots: the first agent start after it continues with the health check, a second one rolls back." },
	{ "update.health_check", FM_CFG_STRING, "", 0, 0, NULL, OFF(update_health_check), 0, NULL,
		"Shell command run after switching to the new software; exit 0 = healthy. \"\" = always healthy." },
	{ "update.health_timeout_ms", FM_CFG_INT, "60000", 100, 3600000, NULL, OFF(update_health_timeout_ms), 0, "ms",
		"Health check time limit; a check that runs longer fails (and the update rolls back)." },
	{ "update.step_timeout_ms", FM_CFG_INT, "600000", 100, 86400000, NULL, OFF(update_step_timeout_ms), 0, "ms",
		"Time limit of one update module step." },
	{ "update.public_keys", FM_CFG_STRLIST, "", 0, 0, NULL, OFF(update_public_keys), 0, NULL,
		"PEM Ed25519 public keys trusted for artifact signatures (several during a key rotation). None = every update is rejected." },
	{ "update.chunk_bytes", FM_CFG_INT, "32768", 512, 4194304, NULL, OFF(update_chunk_bytes), 0, "bytes",
		"Artifact chunk size asked per request (the broker may cap it)." },
	{ "update.persist_every_chunks", FM_CFG_INT, "16", 1, 100000, NULL, OFF(update_persist_every_chunks), 0, NULL,
		"Download progress is persisted (after fsync of the data) every this many chunks: fewer flash writes, more re-download after a crash." },
	{ "update.read_timeout_ms", FM_CFG_INT, "15000", 100, 600000, NULL, OFF(update_read_timeout_ms), 0, "ms",
		"Time to wait for one artifact chunk before asking again." },
	{ "update.policy", FM_CFG_ENUM, "auto", 0, 0, policy_choices, OFF(update_policy), 0, NULL,
		"auto = install every valid update; critical-only = defer non-critical ones (step \"deferred\"); "
		"ask = hold each update (step \"awaiting-approval\") until approved. desired.update_policy overrides it." },
	{ "update.ask_deadline_s", FM_CFG_INT, "86400", 0, 31536000, NULL, OFF(update_ask_deadline_s), 0, "s",
		"ask policy: how long an update waits for approval; 0 = forever." },
	{ "update.on_deadline", FM_CFG_ENUM, "install", 0, 0, deadline_choices, OFF(update_on_deadline), 0, NULL,
		"ask policy: what happens when the deadline passes without an answer." },
	/* config executor */
	{ "config.file", FM_CFG_STRING, "", 0, 0, NULL, OFF(config_file), 0, NULL,
		"JSON object file that config jobs and desired.config write; \"\" = <state_dir>/config.json." },
	{ "config.validate_cmd", FM_CFG_STRING, "", 0, 0, NULL, OFF(config_validate_cmd), 0, NULL,
		"Shell command that checks a candidate config file (\"$1\" and $FLEETMQ_CONFIG_FILE); non-zero exit = refused, old file kept." },
	{ "config.reload_cmd", FM_CFG_STRING, "", 0, 0, NULL, OFF(config_reload_cmd), 0, NULL,
		"Shell command run after a new config file is in place; on failure the old file is restored." },
	{ "config.cmd_timeout_ms", FM_CFG_INT, "30000", 100, 3600000, NULL, OFF(config_cmd_timeout_ms), 0, "ms",
		"Time limit of the validate and reload commands." },
	/* telemetry */
	{ "telemetry.interval_ms", FM_CFG_INT, "60000", 0, 86400000, NULL, OFF(telemetry_interval_ms), 0, "ms",
		"Period of telemetry batches (system health + application metrics); 0 = off, else at least 100." },
	{ "telemetry.app_metrics_file", FM_CFG_STRING, "", 0, 0, NULL, OFF(telemetry_app_metrics_file), 0, NULL,
		"File of 'name value' lines that applications keep up to date (put it on tmpfs); read every interval. \"\" = none." },
	/* features */
	{ "features.file", FM_CFG_STRING, "", 0, 0, NULL, OFF(features_file), 0, NULL,
		"JSON file of feature switches set by feature jobs and desired.features; \"\" = <state_dir>/features.json." },
	/* log */
	{ "log.level", FM_CFG_ENUM, "info", 0, 0, log_choices, OFF(log_level), 0, NULL,
		"Messages up to this level go to stderr (the journal under systemd)." },
};

const size_t agent__config_table_size = sizeof(agent__config_table) / sizeof(agent__config_table[0]);

const char *agent__policy_name(int policy)
{
	return policy >= 0 && policy <= AGENT_POLICY_ASK ? policy_choices[policy] : "?";
}

int agent__policy_parse(const char *s)
{
	int i;

	for(i = 0; s && policy_choices[i]; i++){
		if(!strcmp(s, policy_choices[i])) return i;
	}
	return -1;
}

/* ---------------------------------------------------------------- key lines */

static int node_key_line(yaml_document_t *doc, yaml_node_t *map, const char *prefix, const char *key)
{
	yaml_node_pair_t *pair;
	char full[256];

	if(!map || map->type != YAML_MAPPING_NODE) return 0;
	for(pair = map->data.mapping.pairs.start; pair < map->data.mapping.pairs.top; pair++){
		yaml_node_t *k = yaml_document_get_node(doc, pair->key);
		yaml_node_t *v = yaml_document_get_node(doc, pair->value);
		size_t flen;
		int line;

		if(!k || k->type != YAML_SCALAR_NODE) continue;
		if(snprintf(full, sizeof(full), "%s%s%s", prefix, prefix[0] ? "." : "",
				(const char *)k->data.scalar.value) >= (int)sizeof(full)) continue;
		if(!strcmp(full, key)) return (int)k->start_mark.line + 1;
		flen = strlen(full);
		if(!strncmp(key, full, flen) && key[flen] == '.' && v && v->type == YAML_MAPPING_NODE){
			line = node_key_line(doc, v, full, key);
			if(line) return line;
		}
	}
	return 0;
}

int agent__config_key_line(const char *buf, size_t len, const char *key)
{
	yaml_parser_t parser;
	yaml_document_t doc;
	int line = 0;

	if(!buf || !key) return 0;
	if(!yaml_parser_initialize(&parser)) return 0;
	yaml_parser_set_input_string(&parser, (const unsigned char *)buf, len);
	if(yaml_parser_load(&parser, &doc)){
		line = node_key_line(&doc, yaml_document_get_root_node(&doc), "", key);
		yaml_document_delete(&doc);
	}
	yaml_parser_delete(&parser);
	return line;
}

/* ---------------------------------------------------------------- semantic checks */

struct check_ctx {
	const char *buf;
	size_t len;
	const char *name;
	char *err;
	size_t errlen;
};

static int fail(struct check_ctx *c, const char *key, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int fail(struct check_ctx *c, const char *key, const char *fmt, ...)
{
	int line = agent__config_key_line(c->buf, c->len, key);
	size_t off = 0;
	int n;
	va_list ap;

	if(!c->err || c->errlen == 0) return FLEETMQ_ERR_CONFIG;
	if(line > 0) n = snprintf(c->err, c->errlen, "%s:%d: %s: ", c->name, line, key);
	else n = snprintf(c->err, c->errlen, "%s: %s: ", c->name, key);
	off = n < 0 ? 0 : (size_t)n;
	if(off < c->errlen){
		va_start(ap, fmt);
		vsnprintf(c->err + off, c->errlen - off, fmt, ap);
		va_end(ap);
	}
	return FLEETMQ_ERR_CONFIG;
}

static bool id_valid(const char *s)
{
	size_t n = s ? strlen(s) : 0, i;

	if(n == 0 || n > 128) return false;
	for(i = 0; i < n; i++){
		unsigned char ch = (unsigned char)s[i];
		if(ch < 0x20 || ch == 0x7f || ch == '/' || ch == '+' || ch == '#') return false;
	}
	return true;
}

static bool empty(const char *s)
{
	return !s || !s[0];
}

static int resolve_default(char **field, const char *state_dir, const char *leaf)
{
	char buf[4096];

	if(!empty(*field)) return FLEETMQ_OK;
	snprintf(buf, sizeof(buf), "%s/%s", state_dir, leaf);
	fm_free(*field);
	*field = fm_strdup(buf);
	return *field ? FLEETMQ_OK : FLEETMQ_ERR_NOMEM;
}

static int check(struct check_ctx *c, struct agent_config *cfg)
{
	struct fleetmq_sig_keyring *kr = NULL;
	char msg[AGENT_ERR_BYTES];
	size_t i;
	int rc;

	if(!id_valid(cfg->device_id)) return fail(c, "device.id", "must be 1-128 bytes without '/', '+', '#' or control characters");
	if(empty(cfg->device_type) || strlen(cfg->device_type) > 128) return fail(c, "device.type", "must be 1-128 bytes");
	if(cfg->device_hw_revision && strlen(cfg->device_hw_revision) > 128) return fail(c, "device.hw_revision", "is longer than 128 bytes");
	if(empty(cfg->software_name) || strlen(cfg->software_name) > 128) return fail(c, "device.software_name", "must be 1-128 bytes");
	if(empty(cfg->software_version) || !fleetmq_version_valid(cfg->software_version)){
		return fail(c, "device.software_version", "'%s' is not a version such as 1.2.3 or 2.0.0-rc.1",
				cfg->software_version ? cfg->software_version : "");
	}
	if(empty(cfg->broker_host)) return fail(c, "broker.host", "must not be empty");
	if(empty(cfg->broker_topic_prefix) || strpbrk(cfg->broker_topic_prefix, "/+#") || cfg->broker_topic_prefix[0] == '$'){
		return fail(c, "broker.topic_prefix", "must be one topic level without '/', '+', '#' or a leading '$'");
	}
	if(cfg->broker_reconnect_min_ms > cfg->broker_reconnect_max_ms){
		return fail(c, "broker.reconnect_min_ms", "%lld is larger than broker.reconnect_max_ms (%lld)",
				cfg->broker_reconnect_min_ms, cfg->broker_reconnect_max_ms);
	}
	if(!empty(cfg->tls_key_file) && empty(cfg->tls_cert_file)) return fail(c, "broker.tls.key_file", "needs broker.tls.cert_file");
	if(!cfg->tls_enabled && (!empty(cfg->tls_ca_file) || !empty(cfg->tls_cert_file))){
		return fail(c, !empty(cfg->tls_ca_file) ? "broker.tls.ca_file" : "broker.tls.cert_file",
				"is set but broker.tls.enabled is false");
	}
	if(empty(cfg->state_dir)) return fail(c, "state_dir", "must not be empty");
	if(!empty(cfg->update_handler)){
		struct stat st;
		if(stat(cfg->update_handler, &st) != 0) return fail(c, "update.handler", "%s: %s", cfg->update_handler, strerror(errno));
		if(!S_ISREG(st.st_mode) || access(cfg->update_handler, X_OK) != 0){
			return fail(c, "update.handler", "%s is not an executable file", cfg->update_handler);
		}
	}
	if(cfg->telemetry_interval_ms != 0 && cfg->telemetry_interval_ms < 100){
		return fail(c, "telemetry.interval_ms", "must be 0 (off) or at least 100");
	}
	if(fleetmq_sig_keyring_new(&kr) != FLEETMQ_SIG_OK) return FLEETMQ_ERR_NOMEM;
	for(i = 0; i < cfg->update_public_keys.count; i++){
		rc = fleetmq_sig_keyring_add_file(kr, cfg->update_public_keys.items[i], msg, sizeof(msg));
		if(rc){
			fleetmq_sig_keyring_free(kr);
			return fail(c, "update.public_keys", "%s", msg);
		}
	}
	fleetmq_sig_keyring_free(kr);
	if(resolve_default(&cfg->update_slots_dir, cfg->state_dir, "slots")
			|| resolve_default(&cfg->config_file, cfg->state_dir, "config.json")
			|| resolve_default(&cfg->features_file, cfg->state_dir, "features.json")){
		return FLEETMQ_ERR_NOMEM;
	}
	return FLEETMQ_OK;
}

int agent__config_load_buffer(const char *buf, size_t len, const char *name, struct agent_config *cfg,
		char *err, size_t errlen)
{
	struct check_ctx c = { buf, len, name ? name : "<buffer>", err, errlen };
	int rc;

	memset(cfg, 0, sizeof(*cfg));
	rc = fleetmq_cfg_load_buffer(agent__config_table, agent__config_table_size, cfg, buf, len, c.name, err, errlen);
	if(rc == FLEETMQ_OK) rc = check(&c, cfg);
	if(rc != FLEETMQ_OK) agent__config_free(cfg);
	return rc;
}

int agent__config_load(const char *path, struct agent_config *cfg, char *err, size_t errlen)
{
	char *buf = NULL;
	size_t len = 0;
	int rc;

	memset(cfg, 0, sizeof(*cfg));
	if(!path){
		if(err && errlen) snprintf(err, errlen, "no configuration file given");
		return FLEETMQ_ERR_BAD_REQUEST;
	}
	if(agent__read_file(path, CFG_MAX_FILE_BYTES, &buf, &len) != 0){
		if(err && errlen) snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
		return FLEETMQ_ERR_IO;
	}
	rc = agent__config_load_buffer(buf, len, path, cfg, err, errlen);
	fm_free(buf);
	return rc;
}

void agent__config_free(struct agent_config *cfg)
{
	if(!cfg) return;
	fleetmq_cfg_free(agent__config_table, agent__config_table_size, cfg);
}
