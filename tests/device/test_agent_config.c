/*
 * test_agent_config.c - CUnit suite for the agent's configuration
 * (device-client/agent/agent_config.c): defaults and derived paths, every
 * kind of validation error with its "<file>:<line>: <key>: <reason>" form,
 * the --print-config round trip, and the real binary's command line.
 */
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CUnit/Basic.h>

#include "agent.h"
#include "fleetmq_alloc.h"
#include "fleetmq_status.h"

static char g_dir[128];
static char g_pub[256], g_priv[256], g_handler[256], g_noexec[256];

/* A valid minimal config followed by extra text. */
static char *yaml_with(const char *extra)
{
	static char buf[8192];

	snprintf(buf, sizeof(buf),
			"device:\n"
			"  id: dev-1\n"
			"  type: sensor-v2\n"
			"state_dir: %s/state\n"
			"update:\n"
			"  public_keys: [%s]\n"
			"%s", g_dir, g_pub, extra ? extra : "");
	return buf;
}

static int load(const char *text, struct agent_config *cfg, char *err, size_t errlen)
{
	return agent__config_load_buffer(text, strlen(text), "agent.yaml", cfg, err, errlen);
}

/* Load text, expect a config error whose message starts with prefix. */
static void expect_error(const char *text, const char *prefix, const char *contains)
{
	struct agent_config cfg;
	char err[1024] = "";
	int rc = load(text, &cfg, err, sizeof(err));

	CU_ASSERT_EQUAL(rc, FLEETMQ_ERR_CONFIG);
	if(strncmp(err, prefix, strlen(prefix)) != 0 || (contains && !strstr(err, contains))){
		fprintf(stderr, "\n  got '%s'\n  expected prefix '%s'%s%s\n", err, prefix, contains ? " containing " : "",
				contains ? contains : "");
		CU_FAIL("error message");
	}
	/* nothing left allocated after an error */
	CU_ASSERT_PTR_NULL(cfg.device_id);
	CU_ASSERT_PTR_NULL(cfg.state_dir);
	CU_ASSERT_EQUAL(cfg.update_public_keys.count, 0);
}

static void test_config_load_defaults_and_derived_paths(void)
{
	struct agent_config cfg;
	char err[1024], expect[512];

	CU_ASSERT_EQUAL_FATAL(load(yaml_with(NULL), &cfg, err, sizeof(err)), FLEETMQ_OK);
	CU_ASSERT_STRING_EQUAL(cfg.device_id, "dev-1");
	CU_ASSERT_STRING_EQUAL(cfg.broker_host, "localhost");
	CU_ASSERT_EQUAL(cfg.broker_port, 1883);
	CU_ASSERT_EQUAL(cfg.update_policy, AGENT_POLICY_AUTO);
	CU_ASSERT_EQUAL(cfg.update_on_deadline, AGENT_DEADLINE_INSTALL);
	CU_ASSERT_EQUAL(cfg.update_chunk_bytes, 32768);
	CU_ASSERT_EQUAL(cfg.telemetry_interval_ms, 60000);
	CU_ASSERT_STRING_EQUAL(cfg.software_version, "0.0.0");
	CU_ASSERT_EQUAL(cfg.update_public_keys.count, 1);
	snprintf(expect, sizeof(expect), "%s/state/slots", g_dir);
	CU_ASSERT_STRING_EQUAL(cfg.update_slots_dir, expect);
	snprintf(expect, sizeof(expect), "%s/state/config.json", g_dir);
	CU_ASSERT_STRING_EQUAL(cfg.config_file, expect);
	snprintf(expect, sizeof(expect), "%s/state/features.json", g_dir);
	CU_ASSERT_STRING_EQUAL(cfg.features_file, expect);
	agent__config_free(&cfg);

	/* explicit values, flat keys mixed with nested ones */
	CU_ASSERT_EQUAL_FATAL(load(yaml_with("  policy: ask\n  on_deadline: reject\nconfig.file: /etc/app.json\n"
			"broker: {host: mqtt.local, port: 8883, tls: {enabled: true, ca_file: /ca.pem}}\n"), &cfg, err, sizeof(err)), FLEETMQ_OK);
	CU_ASSERT_EQUAL(cfg.update_policy, AGENT_POLICY_ASK);
	CU_ASSERT_EQUAL(cfg.update_on_deadline, AGENT_DEADLINE_REJECT);
	CU_ASSERT_STRING_EQUAL(cfg.config_file, "/etc/app.json");
	CU_ASSERT_STRING_EQUAL(cfg.broker_host, "mqtt.local");
	CU_ASSERT_TRUE(cfg.tls_enabled);
	agent__config_free(&cfg);
	agent__config_free(&cfg);      /* twice is harmless */
}

static void test_config_load_errors_name_file_line_key(void)
{
	char text[4096], msg[512];

	/* table errors (common/config.c): unknown key, range, enum, type */
	expect_error(yaml_with("  chunk_bytes: 100\n"), "agent.yaml:7: update.chunk_bytes: ", NULL);
	expect_error(yaml_with("  policy: sometimes\n"), "agent.yaml:7: update.policy: ", "auto");
	expect_error(yaml_with("  colour: blue\n"), "agent.yaml:7: update.colour: ", NULL);
	expect_error(yaml_with("broker:\n  port: 70000\n"), "agent.yaml:8: broker.port: ", NULL);
	expect_error(yaml_with("broker:\n  tls:\n    enabled: maybe\n"), "agent.yaml:9: broker.tls.enabled: ", NULL);
	expect_error(yaml_with("telemetry: [1]\n"), "agent.yaml:7: telemetry: ", NULL);
	expect_error("device:\n  id: x\n", "agent.yaml: device.type: required key missing", NULL);
	expect_error(yaml_with("broker: {host: [\n"), "agent.yaml:", "YAML syntax error");

	/* semantic errors (agent_config.c), with the line of the key */
	expect_error("device:\n  type: t\n  id: a/b\n", "agent.yaml:3: device.id: ", "'/'");
	expect_error(yaml_with("device.software_version: v1\n"), "agent.yaml:7: device.software_version: ", "not a version");
	expect_error(yaml_with("broker:\n  reconnect_min_ms: 5000\n  reconnect_max_ms: 1000\n"),
			"agent.yaml:8: broker.reconnect_min_ms: ", "larger than");
	expect_error(yaml_with("broker:\n  tls:\n    key_file: /k.pem\n"), "agent.yaml:9: broker.tls.key_file: ", "cert_file");
	expect_error(yaml_with("broker:\n  tls:\n    ca_file: /ca.pem\n"), "agent.yaml:9: broker.tls.ca_file: ", "enabled is false");
	expect_error(yaml_with("telemetry:\n  interval_ms: 50\n"), "agent.yaml:8: telemetry.interval_ms: ", "at least 100");
	expect_error(yaml_with("broker:\n  topic_prefix: a/b\n"), "agent.yaml:8: broker.topic_prefix: ", NULL);
	snprintf(text, sizeof(text), "update.handler: %s\n", g_noexec);
	expect_error(yaml_with(text), "agent.yaml:7: update.handler: ", "not an executable");
	expect_error(yaml_with("update.handler: /nonexistent/module\n"), "agent.yaml:7: update.handler: ", "No such file");

	/* public keys: unreadable, not a key, a private key */
	snprintf(text, sizeof(text), "device:\n  id: d\n  type: t\nupdate:\n  public_keys:\n    - %s\n    - /nonexistent.pub\n", g_pub);
	expect_error(text, "agent.yaml:5: update.public_keys: ", "/nonexistent.pub: cannot open");
	snprintf(text, sizeof(text), "device: {id: d, type: t}\nupdate.public_keys: [%s]\n", g_priv);
	snprintf(msg, sizeof(msg), "%s: a private key", g_priv);
	expect_error(text, "agent.yaml:2: update.public_keys: ", msg);
	snprintf(text, sizeof(text), "device: {id: d, type: t}\nupdate.public_keys: [%s]\n", g_handler);
	expect_error(text, "agent.yaml:2: update.public_keys: ", "not a PEM Ed25519 public key");
}

static void test_config_key_line_nested_flat_flow(void)
{
	const char *y = "# comment\nbroker:\n  host: x\n  tls:\n    enabled: true\nupdate.policy: ask\ndevice: {id: d,\n  type: t}\n";

	CU_ASSERT_EQUAL(agent__config_key_line(y, strlen(y), "broker.host"), 3);
	CU_ASSERT_EQUAL(agent__config_key_line(y, strlen(y), "broker.tls.enabled"), 5);
	CU_ASSERT_EQUAL(agent__config_key_line(y, strlen(y), "broker.tls"), 4);
	CU_ASSERT_EQUAL(agent__config_key_line(y, strlen(y), "update.policy"), 6);
	CU_ASSERT_EQUAL(agent__config_key_line(y, strlen(y), "device.type"), 8);
	CU_ASSERT_EQUAL(agent__config_key_line(y, strlen(y), "broker.port"), 0);
	CU_ASSERT_EQUAL(agent__config_key_line("a: [", 4, "a"), 0);
}

static char *print_to_string(const struct agent_config *cfg)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	fleetmq_cfg_print(agent__config_table, agent__config_table_size, cfg, f);
	fclose(f);
	return buf;
}

static void test_config_print_config_round_trip(void)
{
	struct agent_config a, b;
	char err[1024], *t1, *t2;

	CU_ASSERT_EQUAL_FATAL(load(yaml_with("  policy: critical-only\n  health_check: \"test -f \\\"$1/x\\\" # not a comment\"\n"
			"broker:\n  password: \"p:w'\\\"d\"\nconfig:\n  validate_cmd: 'jq . \"$1\"'\ntelemetry:\n  interval_ms: 0\n"),
			&a, err, sizeof(err)), FLEETMQ_OK);
	t1 = print_to_string(&a);
	CU_ASSERT_EQUAL_FATAL(agent__config_load_buffer(t1, strlen(t1), "printed", &b, err, sizeof(err)), FLEETMQ_OK);
	t2 = print_to_string(&b);
	CU_ASSERT_STRING_EQUAL(t1, t2);
	CU_ASSERT_STRING_EQUAL(b.update_health_check, "test -f \"$1/x\" # not a comment");
	CU_ASSERT_STRING_EQUAL(b.broker_password, "p:w'\"d");
	CU_ASSERT_STRING_EQUAL(b.config_validate_cmd, "jq . \"$1\"");
	CU_ASSERT_EQUAL(b.update_policy, AGENT_POLICY_CRITICAL_ONLY);
	CU_ASSERT_EQUAL(b.telemetry_interval_ms, 0);
	CU_ASSERT_STRING_EQUAL(b.config_file, a.config_file);
	CU_ASSERT_EQUAL(b.update_public_keys.count, 1);
	/* every key of the table is printed */
	{
		size_t i;
		for(i = 0; i < agent__config_table_size; i++){
			const char *key = agent__config_table[i].key, *leaf = strrchr(key, '.');
			char needle[80];
			snprintf(needle, sizeof(needle), "%s:", leaf ? leaf + 1 : key);
			CU_ASSERT_PTR_NOT_NULL(strstr(t1, needle));
		}
	}
	free(t1);
	free(t2);
	agent__config_free(&a);
	agent__config_free(&b);
}

/* Run the built binary with args; returns its exit code, output in out. */
static int run_agent(const char *const *args, char *out, size_t outlen)
{
	const char *argv[8];
	size_t n = 0, i;

	argv[n++] = FLEETMQ_AGENT_BIN;
	for(i = 0; args[i] && n < 7; i++) argv[n++] = args[i];
	argv[n] = NULL;
	return agent__run_argv(argv, 10000, out, outlen);
}

static void test_config_binary_print_config_and_errors(void)
{
	char path[512], bad[512], *out = malloc(65536);
	struct agent_config cfg;
	char err[1024];
	FILE *f;

	snprintf(path, sizeof(path), "%s/agent.yaml", g_dir);
	f = fopen(path, "w");
	fputs(yaml_with("  policy: ask\n"), f);
	fclose(f);
	{
		const char *args[] = { "--config", path, "--print-config", NULL };
		CU_ASSERT_EQUAL(run_agent(args, out, 65536), 0);
		CU_ASSERT_PTR_NOT_NULL(strstr(out, "  policy: ask\n"));
		CU_ASSERT_PTR_NOT_NULL(strstr(out, "id: \"dev-1\""));
		/* what it printed loads back */
		CU_ASSERT_EQUAL(agent__config_load_buffer(out, strlen(out), "printed", &cfg, err, sizeof(err)), FLEETMQ_OK);
		CU_ASSERT_EQUAL(cfg.update_policy, AGENT_POLICY_ASK);
		agent__config_free(&cfg);
	}
	snprintf(bad, sizeof(bad), "%s/bad.yaml", g_dir);
	f = fopen(bad, "w");
	fputs(yaml_with("  chunk_bytes: 1\n"), f);
	fclose(f);
	{
		const char *args[] = { "--config", bad, NULL };
		char prefix[1024];
		CU_ASSERT_EQUAL(run_agent(args, out, 65536), 2);
		snprintf(prefix, sizeof(prefix), "fleetmq-agent: %s:7: update.chunk_bytes: ", bad);
		CU_ASSERT_EQUAL(strncmp(out, prefix, strlen(prefix)), 0);
	}
	{
		const char *args[] = { "--help", NULL };
		CU_ASSERT_EQUAL(run_agent(args, out, 65536), 0);
		CU_ASSERT_PTR_NOT_NULL(strstr(out, "--print-config"));
	}
	{
		const char *args[] = { "--bogus", NULL };
		CU_ASSERT_EQUAL(run_agent(args, out, 65536), 2);
	}
	{
		const char *args[] = { "--config", "/nonexistent.yaml", NULL };
		CU_ASSERT_EQUAL(run_agent(args, out, 65536), 1);
		CU_ASSERT_PTR_NOT_NULL(strstr(out, "/nonexistent.yaml: cannot open"));
	}
	free(out);
}

static int suite_init(void)
{
	char err[256];
	FILE *f;

	snprintf(g_dir, sizeof(g_dir), "/tmp/fleetmq-test-agentcfg-XXXXXX");
	if(!mkdtemp(g_dir)) return 1;
	snprintf(g_pub, sizeof(g_pub), "%s/release.pub", g_dir);
	snprintf(g_priv, sizeof(g_priv), "%s/release.pem", g_dir);
	snprintf(g_handler, sizeof(g_handler), "%s/module.sh", g_dir);
	snprintf(g_noexec, sizeof(g_noexec), "%s/noexec.sh", g_dir);
	if(fleetmq_sig_keygen(g_priv, g_pub, err, sizeof(err)) != FLEETMQ_SIG_OK) return 1;
	f = fopen(g_handler, "w");
	if(!f) return 1;
	fputs("#!/bin/sh\nexit 0\n", f);
	fclose(f);
	chmod(g_handler, 0755);
	f = fopen(g_noexec, "w");
	if(!f) return 1;
	fputs("#!/bin/sh\nexit 0\n", f);
	fclose(f);
	chmod(g_noexec, 0644);
	return 0;
}

static int suite_cleanup(void)
{
	agent__rm_rf(g_dir);
	return 0;
}

int main(void)
{
	static const struct { const char *name; CU_TestFunc fn; } tests[] = {
		{ "test_config_load_defaults_and_derived_paths", test_config_load_defaults_and_derived_paths },
		{ "test_config_load_errors_name_file_line_key", test_config_load_errors_name_file_line_key },
		{ "test_config_key_line_nested_flat_flow", test_config_key_line_nested_flat_flow },
		{ "test_config_print_config_round_trip", test_config_print_config_round_trip },
		{ "test_config_binary_print_config_and_errors", test_config_binary_print_config_and_errors },
	};
	CU_pSuite suite;
	unsigned failures;
	size_t i;

	if(CU_initialize_registry() != CUE_SUCCESS) return 1;
	suite = CU_add_suite("agent_config", suite_init, suite_cleanup);
	if(!suite){
		CU_cleanup_registry();
		return 1;
	}
	for(i = 0; i < sizeof(tests) / sizeof(tests[0]); i++){
		if(!CU_add_test(suite, tests[i].name, tests[i].fn)){
			CU_cleanup_registry();
			return 1;
		}
	}
	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	failures = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
	CU_cleanup_registry();
	return failures ? 1 : 0;
}
