/*
 * cli_config.c - the CLI's effective settings.
 *
 * Every setting has one row in cli_config_table (key, type, default, range,
 * help), which drives the YAML file (--config FILE or $FLEETMQ_CONFIG,
 * loaded by common/fleetmq_config.h) and its defaults. Precedence, highest
 * first: command-line flag, environment variable (FLEETMQ_HOST,
 * FLEETMQ_PORT, FLEETMQ_USERNAME, FLEETMQ_PASSWORD), configuration file,
 * table default. docs/CLI.md lists the same keys.
 *
 * Must never: print a password.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "fleetmq_alloc.h"
#include "fleetmq_config.h"
#include "fleetmq_status.h"

#define DEFAULT_PORT 1883
#define DEFAULT_TLS_PORT 8883

struct cli_file_config {
	char *host;
	long long port;
	char *username;
	char *password;
	char *client_id;
	char *tls_ca;
	char *tls_cert;
	char *tls_key;
	long long timeout_ms;
	char *prefix;
	char *artifacts_dir;
	char *signing_key;
};

#define OFF(field) offsetof(struct cli_file_config, field)

static const struct fleetmq_cfg_option cli_config_table[] = {
	{ "broker.host", FM_CFG_STRING, "127.0.0.1", 0, 0, NULL, OFF(host), 0, NULL,
		"Broker address (name or IP)." },
	{ "broker.port", FM_CFG_INT, "0", 0, 65535, NULL, OFF(port), 0, NULL,
		"Broker port; 0 = 1883, or 8883 when TLS is on." },
	{ "broker.username", FM_CFG_STRING, "ops", 0, 0, NULL, OFF(username), 0, NULL,
		"MQTT username; must be listed in the plugin's security.operator_usernames." },
	{ "broker.password", FM_CFG_STRING, NULL, 0, 0, NULL, OFF(password), 0, NULL,
		"MQTT password (prefer FLEETMQ_PASSWORD, and keep this file private)." },
	{ "broker.client_id", FM_CFG_STRING, NULL, 0, 0, NULL, OFF(client_id), 0, NULL,
		"MQTT client id; default fleetmq-cli-<pid>." },
	{ "broker.tls_ca", FM_CFG_STRING, NULL, 0, 0, NULL, OFF(tls_ca), 0, NULL,
		"CA certificate file (PEM) to verify the broker; switches TLS on." },
	{ "broker.tls_cert", FM_CFG_STRING, NULL, 0, 0, NULL, OFF(tls_cert), 0, NULL,
		"Client certificate (PEM) for TLS client authentication; switches TLS on." },
	{ "broker.tls_key", FM_CFG_STRING, NULL, 0, 0, NULL, OFF(tls_key), 0, NULL,
		"Private key (PEM) of the client certificate." },
	{ "broker.timeout_ms", FM_CFG_INT, "5000", 1, 3600000, NULL, OFF(timeout_ms), 0, "ms",
		"Time limit for connecting and for each request." },
	{ "topic_prefix", FM_CFG_STRING, "fleet", 0, 0, NULL, OFF(prefix), 0, NULL,
		"Fleet topic prefix of the plugin (its topic_prefix)." },
	{ "artifacts.dir", FM_CFG_STRING, NULL, 0, 0, NULL, OFF(artifacts_dir), 0, NULL,
		"Artifact store directory (the plugin's artifacts.dir), for artifacts add/list and jobs create --artifact." },
	{ "artifacts.signing_key", FM_CFG_STRING, NULL, 0, 0, NULL, OFF(signing_key), 0, NULL,
		"Ed25519 private key (PEM) used by artifacts add and keys sign when --key is not given." },
};

#define CONFIG_TABLE_LEN (sizeof(cli_config_table) / sizeof(cli_config_table[0]))

static const char *env(const char *name)
{
	const char *v = getenv(name);
	return v && v[0] ? v : NULL;
}

static const char *pick(const char *flag, const char *envval, const char *file)
{
	if(flag) return flag;
	if(envval) return envval;
	return file;
}

int cli_globals_resolve(struct cli_globals *g, const struct cli_args *a)
{
	struct cli_file_config *c;
	char err[512];
	uint64_t v;
	const char *s;
	int rc;

	memset(g, 0, sizeof(*g));
	c = fm_calloc(1, sizeof(*c));
	if(!c) return cli_oom();
	g->file_cfg = c;
	g->config_path = pick(cli_opt(a, OPT_CONFIG), env("FLEETMQ_CONFIG"), NULL);
	if(g->config_path){
		rc = fleetmq_cfg_load_file(cli_config_table, CONFIG_TABLE_LEN, c, g->config_path, err, sizeof(err));
		if(rc != FLEETMQ_OK){
			fprintf(stderr, "fleetmq: configuration file: %s\n", err);
			return CLI_EXIT_LOCAL;
		}
	}else if(fleetmq_cfg_defaults(cli_config_table, CONFIG_TABLE_LEN, c) != FLEETMQ_OK){
		return cli_oom();
	}

	g->host = pick(cli_opt(a, OPT_HOST), env("FLEETMQ_HOST"), c->host);
	g->username = pick(cli_opt(a, OPT_USERNAME), env("FLEETMQ_USERNAME"), c->username);
	g->password = pick(cli_opt(a, OPT_PASSWORD), env("FLEETMQ_PASSWORD"), c->password);
	g->client_id = pick(cli_opt(a, OPT_CLIENT_ID), NULL, c->client_id);
	g->tls_ca = pick(cli_opt(a, OPT_TLS_CA), NULL, c->tls_ca);
	g->tls_cert = pick(cli_opt(a, OPT_TLS_CERT), NULL, c->tls_cert);
	g->tls_key = pick(cli_opt(a, OPT_TLS_KEY), NULL, c->tls_key);
	g->prefix = pick(cli_opt(a, OPT_PREFIX), NULL, c->prefix);
	g->artifacts_dir = pick(cli_opt(a, OPT_ARTIFACTS_DIR), NULL, c->artifacts_dir);
	g->signing_key = c->signing_key;
	g->json = cli_flag(a, OPT_JSON);
	g->tls = g->tls_ca || g->tls_cert || g->tls_key;

	g->port = (int)c->port;
	if((s = env("FLEETMQ_PORT")) != NULL){
		if(!cli_parse_u64(s, &v) || v < 1 || v > 65535){
			fprintf(stderr, "fleetmq: FLEETMQ_PORT: '%s' is not a port number (1..65535)\n", s);
			return CLI_EXIT_USAGE;
		}
		g->port = (int)v;
	}
	v = (uint64_t)g->port;
	rc = cli_opt_uint(a, OPT_PORT, 1, 65535, &v, NULL);
	if(rc != CLI_EXIT_OK) return rc;
	g->port = (int)v;
	if(g->port == 0) g->port = g->tls ? DEFAULT_TLS_PORT : DEFAULT_PORT;

	v = (uint64_t)c->timeout_ms;
	rc = cli_opt_uint(a, OPT_TIMEOUT_MS, 1, 3600000, &v, NULL);
	if(rc != CLI_EXIT_OK) return rc;
	g->timeout_ms = (long)v;

	if(!g->host || !g->host[0]){
		fprintf(stderr, "fleetmq: the broker host is empty\n");
		return CLI_EXIT_USAGE;
	}
	if(!g->username || !g->username[0]){
		fprintf(stderr, "fleetmq: the username must not be empty (--username, FLEETMQ_USERNAME, broker.username)\n");
		return CLI_EXIT_USAGE;
	}
	if(!g->prefix || !g->prefix[0] || strpbrk(g->prefix, "/+#") || strlen(g->prefix) > CLI_MAX_ID_BYTES){
		fprintf(stderr, "fleetmq: --prefix: '%s' must be one topic level of at most %d bytes\n",
				g->prefix ? g->prefix : "", CLI_MAX_ID_BYTES);
		return CLI_EXIT_USAGE;
	}
	if(!g->client_id || !g->client_id[0]){
		snprintf(g->client_id_buf, sizeof(g->client_id_buf), "fleetmq-cli-%ld", (long)getpid());
		g->client_id = g->client_id_buf;
	}
	return CLI_EXIT_OK;
}

void cli_globals_free(struct cli_globals *g)
{
	if(!g || !g->file_cfg) return;
	fleetmq_cfg_free(cli_config_table, CONFIG_TABLE_LEN, g->file_cfg);
	fm_free(g->file_cfg);
	g->file_cfg = NULL;
}
