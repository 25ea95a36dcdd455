/*
 * test_e2e_cli.c - the operator CLI (`fleetmq`) end to end: the real binary
 * (FLEETMQ_CLI_BIN), run with fork/exec against a real mosquitto with the
 * fleetmq plugin, with devices simulated by harness MQTT clients that fetch
 * their job executions (jobs/next/get) and report on them.
 *
 * What is asserted is what an operator or a script sees: exit status,
 * stdout (parsed with cJSON for --json) and the words of stderr. One broker
 * for the suite (jobs.check_interval_ms 50); every test uses its own device
 * and job ids. Local-only commands (keys, artifacts) work in a temp dir.
 */
#include "harness.h"

#include <CUnit/Basic.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef FLEETMQ_CLI_BIN
#error "FLEETMQ_CLI_BIN must name the fleetmq binary (tests/CMakeLists.txt)"
#endif

#define CLI_YAML FM_DEFAULT_YAML "jobs:\n  check_interval_ms: 50\n"
#define CLI_WAIT_MS 20000            /* longest a CLI run may take in these tests */
#define MAX_ARGS 64

#define ST_IN_PROGRESS FLEETMQ__V1__EXECUTION_STATUS__EXECUTION_STATUS_IN_PROGRESS
#define ST_SUCCEEDED FLEETMQ__V1__EXECUTION_STATUS__EXECUTION_STATUS_SUCCEEDED
#define ST_FAILED FLEETMQ__V1__EXECUTION_STATUS__EXECUTION_STATUS_FAILED

static struct fm_broker g_broker;
static char g_dir[256];              /* scratch dir: CLI outputs, keys, artifacts */
static int g_runs;

/* ---- running the CLI ----------------------------------------------------- */

struct cli_run {
	pid_t pid;
	char out_path[320];
	char err_path[320];
	int status;                      /* exit code, 128+signal, -1 = timed out */
	char *out;                       /* stdout (malloc'd, NUL-terminated) */
	char *err;                       /* stderr */
};

/* How to run: env entries "NAME=value" (NULL-terminated, may be NULL) and
 * whether to add --port <broker> --timeout-ms 5000 in front. */
struct cli_opts {
	const char *const *env;
	bool no_port;
};

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long n;

	if(!f) return strdup("");
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc((size_t)(n > 0 ? n : 0) + 1);
	if(buf){
		size_t got = n > 0 ? fread(buf, 1, (size_t)n, f) : 0;
		buf[got] = '\0';
	}
	fclose(f);
	return buf ? buf : strdup("");
}

static void run_free(struct cli_run *r)
{
	free(r->out);
	free(r->err);
	r->out = r->err = NULL;
}

/* Start fleetmq with the NULL-terminated argv tail; stdout and stderr go to
 * files. Returns 0 or -1. */
static int cli_start(struct cli_run *r, const struct cli_opts *o, const char *const *args)
{
	const char *argv[MAX_ARGS + 8];
	char port[16];
	int n = 0, i;

	memset(r, 0, sizeof(*r));
	g_runs++;
	snprintf(r->out_path, sizeof(r->out_path), "%s/run%d.out", g_dir, g_runs);
	snprintf(r->err_path, sizeof(r->err_path), "%s/run%d.err", g_dir, g_runs);
	snprintf(port, sizeof(port), "%d", g_broker.port);
	argv[n++] = FLEETMQ_CLI_BIN;
	if(!o || !o->no_port){
		argv[n++] = "--port";
		argv[n++] = port;
		argv[n++] = "--timeout-ms";
		argv[n++] = "5000";
	}
	for(i = 0; args[i] && n < MAX_ARGS; i++) argv[n++] = args[i];
	argv[n] = NULL;

	r->pid = fork();
	if(r->pid < 0) return -1;
	if(r->pid == 0){
		int out = open(r->out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		int err = open(r->err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if(out < 0 || err < 0) _exit(126);
		dup2(out, 1);
		dup2(err, 2);
		unsetenv("FLEETMQ_HOST");
		unsetenv("FLEETMQ_PORT");
		unsetenv("FLEETMQ_USERNAME");
		unsetenv("FLEETMQ_PASSWORD");
		unsetenv("FLEETMQ_CONFIG");
		for(i = 0; o && o->env && o->env[i]; i++) putenv((char *)o->env[i]);
		execv(FLEETMQ_CLI_BIN, (char *const *)argv);
		_exit(127);
	}
	return 0;
}

/* Wait for the run to end (killing it after timeout_ms) and read its output. */
static int cli_finish(struct cli_run *r, int timeout_ms)
{
	uint64_t deadline = fm_mono_ms() + (uint64_t)timeout_ms;
	int st = 0;

	r->status = -1;
	for(;;){
		pid_t p = waitpid(r->pid, &st, WNOHANG);
		if(p == r->pid){
			r->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
			break;
		}
		if(fm_mono_ms() >= deadline){
			kill(r->pid, SIGKILL);
			waitpid(r->pid, &st, 0);
			break;
		}
		fm_sleep_ms(20);
	}
	r->out = slurp(r->out_path);
	r->err = slurp(r->err_path);
	return r->status;
}

/* Run to completion: cli(&r, opts, "jobs", "list", NULL). Returns the exit status. */
static int cli(struct cli_run *r, const struct cli_opts *o, ...)
{
	const char *args[MAX_ARGS + 1];
	va_list ap;
	int n = 0;

	va_start(ap, o);
	while(n < MAX_ARGS && (args[n] = va_arg(ap, const char *)) != NULL) n++;
	va_end(ap);
	args[n] = NULL;
	if(cli_start(r, o, args) != 0){
		memset(r, 0, sizeof(*r));
		r->out = strdup("");
		r->err = strdup("fork failed");
		return r->status = -1;
	}
	return cli_finish(r, CLI_WAIT_MS);
}

#define SHOW(r) "exit %d\n--- stdout\n%.700s\n--- stderr\n%.600s", (r).status, (r).out ? (r).out : "", \
		(r).err ? (r).err : ""

/* stdout parsed as one JSON document (NULL if it is not). */
static cJSON *out_json(const struct cli_run *r)
{
	return r->out ? cJSON_Parse(r->out) : NULL;
}

/* Last non-empty line of stdout parsed as JSON (jobs watch --json). */
static cJSON *last_json_line(const struct cli_run *r)
{
	char *copy = strdup(r->out ? r->out : ""), *line, *save = NULL, *last = NULL;
	cJSON *j;

	for(line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) last = line;
	j = last ? cJSON_Parse(last) : NULL;
	free(copy);
	return j;
}

static const char *jstr(const cJSON *root, const char *path)
{
	const cJSON *it = root ? fm_json_path(root, path) : NULL;
	return cJSON_IsString(it) ? it->valuestring : "";
}

static double jnum(const cJSON *root, const char *path, double dflt)
{
	const cJSON *it = root ? fm_json_path(root, path) : NULL;
	return cJSON_IsNumber(it) ? it->valuedouble : dflt;
}

static char *path_in(char *buf, size_t len, const char *name)
{
	snprintf(buf, len, "%s/%s", g_dir, name);
	return buf;
}

static int write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "wb");
	if(!f) return -1;
	fputs(text, f);
	return fclose(f);
}

/* A TCP port on 127.0.0.1 that nobody listens on (bound, then closed). */
static int closed_port(void)
{
	struct sockaddr_in a;
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port = 0;

	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if(fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 && getsockname(fd, (struct sockaddr *)&a, &len) == 0){
		port = ntohs(a.sin_port);
	}
	if(fd >= 0) close(fd);
	return port;
}

/* ---- simulated devices ---------------------------------------------------- */

static struct fm_client *device_online(const char *id)
{
	struct fm_client *c = fm_device_connect(g_broker.port, id);
	Fleetmq__V1__HelloAccepted *ha;

	FM_ASSERT(c != NULL, "device %s cannot connect", id);
	if(!c) return NULL;
	ha = fm_device_hello(c, id, 0, FM_TIMEOUT_MS);
	FM_ASSERT(ha != NULL, "device %s: no hello/accepted", id);
	if(!ha){
		fm_client_destroy(c);
		return NULL;
	}
	fleetmq__v1__hello_accepted__free_unpacked(ha, NULL);
	return c;
}

/* Fetch the device's next execution until it is job_id (released by the
 * rollout), then report IN_PROGRESS and the final status. Returns true if
 * both reports were accepted. */
static bool device_run_job(struct fm_client *c, const char *id, const char *job_id, int final_status)
{
	uint64_t deadline = fm_mono_ms() + 5000, version = 0;
	struct fm_job_update_result u;
	char token[64];
	int n = 0, rc;

	for(;;){
		Fleetmq__V1__JobNextGetAccepted *a;
		snprintf(token, sizeof(token), "%s-next-%d", id, ++n);
		a = fm_job_next_get(c, id, token, FM_TIMEOUT_MS);
		if(a && a->has_execution && a->execution && !strcmp(a->execution->job_id, job_id)){
			version = a->execution->version;
			fleetmq__v1__job_next_get_accepted__free_unpacked(a, NULL);
			break;
		}
		if(a) fleetmq__v1__job_next_get_accepted__free_unpacked(a, NULL);
		if(fm_mono_ms() >= deadline){
			FM_ASSERT(false, "device %s never got job %s", id, job_id);
			return false;
		}
		fm_sleep_ms(100);
	}
	snprintf(token, sizeof(token), "%s-start", id);
	rc = fm_job_update(c, id, job_id, ST_IN_PROGRESS, version, 50, token, &u, FM_TIMEOUT_MS);
	FM_ASSERT(rc == 1, "device %s: IN_PROGRESS on %s not accepted (%s)", id, job_id,
			u.rejected ? u.rejected->reason : "no reply");
	if(rc != 1){
		fm_job_update_result_clear(&u);
		return false;
	}
	version = u.accepted->version;
	fm_job_update_result_clear(&u);
	snprintf(token, sizeof(token), "%s-end", id);
	rc = fm_job_update(c, id, job_id, final_status, version, 100, token, &u, FM_TIMEOUT_MS);
	FM_ASSERT(rc == 1, "device %s: final report on %s not accepted (%s)", id, job_id,
			u.rejected ? u.rejected->reason : "no reply");
	fm_job_update_result_clear(&u);
	return rc == 1;
}

/* ---- suite ---------------------------------------------------------------- */

static int suite_init(void)
{
	struct fm_broker_opts o = FM_BROKER_OPTS_INITIALIZER;

	snprintf(g_dir, sizeof(g_dir), "/tmp/fleetmq-cli-e2e.XXXXXX");
	if(!mkdtemp(g_dir)) return -1;
	o.yaml = CLI_YAML;
	if(fm_broker_start(&g_broker, &o) != 0){
		fm_broker_cleanup(&g_broker);
		return -1;
	}
	return 0;
}

static int suite_cleanup(void)
{
	char cmd[400];

	if(CU_get_number_of_failures() > 0){
		fm_broker_dump_log(&g_broker, 60);
		fprintf(stderr, "CLI outputs kept in %s\n", g_dir);
	}else{
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_dir);
		if(system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", g_dir);
	}
	fm_broker_cleanup(&g_broker);
	return 0;
}

/* ---- tests: command line -------------------------------------------------- */

static void test_cli_usage_errors_exit_2(void)
{
	struct cli_run r;

	FM_ASSERT(cli(&r, NULL, "--help", NULL) == 0, SHOW(r));
	FM_ASSERT(strstr(r.out, "jobs watch") && strstr(r.out, "exit status"), "main help lacks commands: " SHOW(r));
	run_free(&r);
	FM_ASSERT(cli(&r, NULL, "jobs", "create", "--help", NULL) == 0, SHOW(r));
	FM_ASSERT(strstr(r.out, "--canary-count") != NULL, "jobs create --help lacks its options: " SHOW(r));
	run_free(&r);
	FM_ASSERT(cli(&r, NULL, "frobnicate", NULL) == 2, SHOW(r));
	run_free(&r);
	FM_ASSERT(cli(&r, NULL, "jobs", "create", "--bogus", NULL) == 2, SHOW(r));
	run_free(&r);
	FM_ASSERT(cli(&r, NULL, "jobs", "watch", NULL) == 2, SHOW(r));
	run_free(&r);
	FM_ASSERT(cli(&r, NULL, "jobs", "list", "--canary-count", "3", NULL) == 2, SHOW(r));
	FM_ASSERT(strstr(r.err, "does not apply") != NULL, SHOW(r));
	run_free(&r);
	FM_ASSERT(cli(&r, NULL, "jobs", "create", "--type", "config", "--document", "{\"set\":{}}", "--devices", "a",
				"--abort", "SOMETIMES:20", NULL) == 2, SHOW(r));
	run_free(&r);
}

/* ---- tests: devices and shadows ------------------------------------------ */

static void test_cli_devices_list_json(void)
{
	struct fm_client *d = device_online("cli-dev-1");
	const cJSON *it, *found = NULL;
	struct cli_run r;
	cJSON *j;

	FM_ASSERT(cli(&r, NULL, "--json", "devices", "list", NULL) == 0, SHOW(r));
	j = out_json(&r);
	FM_ASSERT(j != NULL, "devices list --json is not JSON: " SHOW(r));
	cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(j, "devices")){
		if(!strcmp(jstr(it, "deviceId"), "cli-dev-1")) found = it;
	}
	FM_ASSERT(found != NULL, "cli-dev-1 not listed: " SHOW(r));
	FM_ASSERT_STR_EQ(jstr(found, "presence"), "online");
	FM_ASSERT_STR_EQ(jstr(found, "deviceType"), "e2e-sensor");
	FM_ASSERT(jnum(found, "pendingJobs", -1) == 0, "pendingJobs: " SHOW(r));
	FM_ASSERT(jnum(j, "count", 0) >= 1 && jnum(j, "totalDevices", 0) >= 1, SHOW(r));
	cJSON_Delete(j);
	run_free(&r);

	/* the table for people names the device and its state */
	FM_ASSERT(cli(&r, NULL, "devices", "list", NULL) == 0, SHOW(r));
	FM_ASSERT(strstr(r.out, "cli-dev-1") && strstr(r.out, "online") && strstr(r.out, "PRESENCE"), SHOW(r));
	run_free(&r);

	FM_ASSERT(cli(&r, NULL, "--json", "devices", "show", "cli-dev-1", NULL) == 0, SHOW(r));
	j = out_json(&r);
	FM_ASSERT_STR_EQ(jstr(j, "device.deviceId"), "cli-dev-1");
	FM_ASSERT(cJSON_IsArray(fm_json_path(j, "executions")), "devices show: no executions array: " SHOW(r));
	cJSON_Delete(j);
	run_free(&r);

	FM_ASSERT(cli(&r, NULL, "devices", "show", "cli-no-such-device", NULL) == 1, SHOW(r));
	FM_ASSERT(strstr(r.err, "NOT_FOUND") != NULL, SHOW(r));
	run_free(&r);
	fm_client_destroy(d);
}

static void test_cli_shadow_set_and_get(void)
{
	struct fm_client *d = device_online("cli-dev-shadow");
	struct cli_run r;
	cJSON *j;

	FM_ASSERT(cli(&r, NULL, "shadow", "set-desired", "cli-dev-shadow", "{\"led\":\"on\"}", NULL) == 0, SHOW(r));
	run_free(&r);
	FM_ASSERT(cli(&r, NULL, "--json", "shadow", "get", "cli-dev-shadow", NULL) == 0, SHOW(r));
	j = out_json(&r);
	FM_ASSERT_STR_EQ(jstr(j, "state.desired.led"), "on");
	FM_ASSERT_STR_EQ(jstr(j, "delta.led"), "on");
	FM_ASSERT(jnum(j, "version", 0) >= 1, SHOW(r));
	cJSON_Delete(j);
	run_free(&r);
	FM_ASSERT(cli(&r, NULL, "shadow", "set-desired", "cli-dev-shadow", "{\"led\":", NULL) == 2, SHOW(r));
	FM_ASSERT(strstr(r.err, "invalid JSON") != NULL, SHOW(r));
	run_free(&r);
	FM_ASSERT(cli(&r, NULL, "shadow", "set-desired", "cli-dev-shadow", "{\"led\":\"off\"}", "--expected-version", "99",
				NULL) == 1, SHOW(r));
	FM_ASSERT(strstr(r.err, "CONFLICT") != NULL, SHOW(r));
	run_free(&r);
	fm_client_destroy(d);
}

/* ---- tests: jobs ------------------------------------------------------------ */

static void test_cli_jobs_create_watch_completes(void)
{
	struct fm_client *d1 = device_online("cli-w1"), *d2 = device_online("cli-w2");
	static const char *const watch_args[] = { "--json", "jobs", "watch", "cli-job-ok", "--interval-ms", "100", NULL };
	struct cli_run r, w;
	cJSON *j;

	FM_ASSERT(cli(&r, NULL, "jobs", "create", "--id", "cli-job-ok", "--type", "config", "--document",
				"{\"set\":{\"rate\":\"10\"}}", "--devices", "cli-w1,cli-w2", "--description", "e2e", NULL) == 0, SHOW(r));
	FM_ASSERT(strstr(r.out, "cli-job-ok created") != NULL, SHOW(r));
	run_free(&r);

	FM_ASSERT_FATAL(cli_start(&w, NULL, watch_args) == 0, "cannot start jobs watch");
	if(d1) device_run_job(d1, "cli-w1", "cli-job-ok", ST_SUCCEEDED);
	if(d2) device_run_job(d2, "cli-w2", "cli-job-ok", ST_SUCCEEDED);
	FM_ASSERT(cli_finish(&w, CLI_WAIT_MS) == 0, "watch of a job where every device succeeded: " SHOW(w));
	j = last_json_line(&w);
	FM_ASSERT(j != NULL, "watch --json: last line is not JSON: " SHOW(w));
	FM_ASSERT(cJSON_IsTrue(fm_json_path(j, "final")), SHOW(w));
	FM_ASSERT_STR_EQ(jstr(j, "status"), "COMPLETED");
	FM_ASSERT_STR_EQ(jstr(j, "outcome"), "succeeded");
	FM_ASSERT(jnum(j, "counts.succeeded", 0) == 2 && jnum(j, "exitCode", -1) == 0, SHOW(w));
	cJSON_Delete(j);
	run_free(&w);

	/* show --json: the job with its counts and rollout */
	FM_ASSERT(cli(&r, NULL, "--json", "jobs", "show", "cli-job-ok", "--executions", NULL) == 0, SHOW(r));
	j = out_json(&r);
	FM_ASSERT_STR_EQ(jstr(j, "job.status"), "COMPLETED");
	FM_ASSERT_STR_EQ(jstr(j, "job.type"), "config");
	FM_ASSERT(jnum(j, "job.counts.succeeded", 0) == 2 && jnum(j, "job.counts.total", 0) == 2, SHOW(r));
	FM_ASSERT(jnum(j, "job.rollout.released", 0) == 2, "rollout progress missing: " SHOW(r));
	FM_ASSERT(cJSON_GetArraySize(fm_json_path(j, "executions")) == 2, SHOW(r));
	cJSON_Delete(j);
	run_free(&r);

	/* the human view: bars per state */
	FM_ASSERT(cli(&r, NULL, "jobs", "show", "cli-job-ok", NULL) == 0, SHOW(r));
	FM_ASSERT(strstr(r.out, "succeeded") && strstr(r.out, "[###") && strstr(r.out, "COMPLETED"), SHOW(r));
	run_free(&r);

	/* watching a job that already completed returns at once */
	FM_ASSERT(cli(&r, NULL, "jobs", "watch", "cli-job-ok", NULL) == 0, SHOW(r));
	FM_ASSERT(strstr(r.out, "succeeded") != NULL, SHOW(r));
	run_free(&r);

	/* the audit log names the operator */
	FM_ASSERT(cli(&r, NULL, "--json", "audit", "--target", "cli-job-ok", "--actor", "ops", NULL) == 0, SHOW(r));
	j = out_json(&r);
	FM_ASSERT(j && jnum(j, "count", 0) >= 1, SHOW(r));
	FM_ASSERT_STR_EQ(jstr(cJSON_GetArrayItem(fm_json_path(j, "entries"), 0), "action"), "createJob");
	cJSON_Delete(j);
	run_free(&r);

	fm_client_destroy(d1);
	fm_client_destroy(d2);
}

static void test_cli_jobs_watch_failure_exit_5(void)
{
	struct fm_client *d = device_online("cli-f1");
	static const char *const watch_args[] = { "jobs", "watch", "cli-job-fail", "--interval-ms", "100", NULL };
	struct cli_run r, w;

	FM_ASSERT(cli(&r, NULL, "jobs", "create", "--id", "cli-job-fail", "--type", "feature", "--document",
				"{\"enable\":[\"x\"]}", "--devices", "cli-f1", NULL) == 0, SHOW(r));
	run_free(&r);
	FM_ASSERT_FATAL(cli_start(&w, NULL, watch_args) == 0, "cannot start jobs watch");
	if(d) device_run_job(d, "cli-f1", "cli-job-fail", ST_FAILED);
	FM_ASSERT(cli_finish(&w, CLI_WAIT_MS) == 5, "watch of a job whose execution failed: " SHOW(w));
	FM_ASSERT(strstr(w.out, "completed with failures") && strstr(w.out, "1 failed"), SHOW(w));
	run_free(&w);
	fm_client_destroy(d);
}

static void test_cli_jobs_cancel(void)
{
	struct cli_run r;
	const cJSON *it;
	bool listed = false;
	cJSON *j;

	/* the device never connects: the execution stays queued */
	FM_ASSERT(cli(&r, NULL, "jobs", "create", "--id", "cli-job-cancel", "--type", "custom", "--document", "{\"x\":1}",
				"--devices", "cli-offline-1", NULL) == 0, SHOW(r));
	run_free(&r);
	FM_ASSERT(cli(&r, NULL, "jobs", "cancel", "cli-job-cancel", "--reason", "e2e test", NULL) == 0, SHOW(r));
	FM_ASSERT(strstr(r.out, "CANCELED") != NULL, SHOW(r));
	run_free(&r);
	FM_ASSERT(cli(&r, NULL, "jobs", "watch", "cli-job-cancel", NULL) == 5, "watch of a canceled job: " SHOW(r));
	FM_ASSERT(strstr(r.out, "canceled") != NULL, SHOW(r));
	run_free(&r);
	FM_ASSERT(cli(&r, NULL, "jobs", "cancel", "cli-job-cancel", NULL) == 1, "second cancel: " SHOW(r));
	FM_ASSERT(strstr(r.err, "already CANCELED") != NULL, SHOW(r));
	run_free(&r);

	FM_ASSERT(cli(&r, NULL, "--json", "jobs", "list", "--status", "canceled", NULL) == 0, SHOW(r));
	j = out_json(&r);
	cJSON_ArrayForEach(it, fm_json_path(j, "jobs")){
		FM_ASSERT_STR_EQ(jstr(it, "status"), "CANCELED");
		if(!strcmp(jstr(it, "jobId"), "cli-job-cancel")) listed = true;
	}
	FM_ASSERT(listed, "canceled job not in jobs list --status canceled: " SHOW(r));
	cJSON_Delete(j);
	run_free(&r);
	FM_ASSERT(cli(&r, NULL, "jobs", "list", "--status", "sideways", NULL) == 2, SHOW(r));
	run_free(&r);
}

static void test_cli_jobs_watch_until_timeout_exit_3(void)
{
	struct cli_run r;

	FM_ASSERT(cli(&r, NULL, "jobs", "create", "--id", "cli-job-open", "--type", "custom", "--document", "{}",
				"--devices", "cli-offline-2", NULL) == 0, SHOW(r));
	run_free(&r);
	FM_ASSERT(cli(&r, NULL, "jobs", "watch", "cli-job-open", "--interval-ms", "100", "--until-timeout", "600", NULL) == 3,
			SHOW(r));
	FM_ASSERT(strstr(r.err, "still") != NULL, SHOW(r));
	run_free(&r);
	FM_ASSERT(cli(&r, NULL, "jobs", "cancel", "cli-job-open", NULL) == 0, SHOW(r));
	run_free(&r);
}

/* ---- tests: failures a person can cause ----------------------------------- */

static void test_cli_errors(void)
{
	char port[16], bad[320], good[320];
	struct cli_opts noport = { NULL, true };
	struct cli_run r;

	snprintf(port, sizeof(port), "%d", closed_port());
	FM_ASSERT(cli(&r, &noport, "--port", port, "--timeout-ms", "3000", "jobs", "list", NULL) == 3,
			"unreachable broker: " SHOW(r));
	FM_ASSERT(strstr(r.err, "cannot connect") != NULL, SHOW(r));
	run_free(&r);

	FM_ASSERT(cli(&r, NULL, "--username", "intruder", "jobs", "list", NULL) == 1, "non-operator: " SHOW(r));
	FM_ASSERT(strstr(r.err, "not authorised") != NULL, SHOW(r));
	run_free(&r);

	FM_ASSERT(cli(&r, NULL, "jobs", "show", "cli-no-such-job", NULL) == 1, "unknown job: " SHOW(r));
	FM_ASSERT(strstr(r.err, "NOT_FOUND") && strstr(r.err, "cli-no-such-job"), SHOW(r));
	run_free(&r);
	FM_ASSERT(cli(&r, NULL, "jobs", "watch", "cli-no-such-job", NULL) == 1, "watch of an unknown job: " SHOW(r));
	run_free(&r);
	FM_ASSERT(cli(&r, NULL, "jobs", "cancel", "cli-no-such-job", NULL) == 1, SHOW(r));
	run_free(&r);

	/* bad JSON on the command line: usage error */
	FM_ASSERT(cli(&r, NULL, "jobs", "create", "--type", "config", "--document", "{\"set\":", "--devices", "x", NULL) == 2,
			"bad --document: " SHOW(r));
	FM_ASSERT(strstr(r.err, "invalid JSON") != NULL, SHOW(r));
	run_free(&r);
	/* bad JSON in a file, or no file: local file error */
	write_text(path_in(bad, sizeof(bad), "bad-doc.json"), "{\"set\": {\"a\": 1,}}\n");
	FM_ASSERT(cli(&r, NULL, "jobs", "create", "--type", "config", "--document-file", bad, "--devices", "x", NULL) == 4,
			"invalid document file: " SHOW(r));
	FM_ASSERT(strstr(r.err, "invalid JSON") && strstr(r.err, "bad-doc.json:1:"), SHOW(r));
	run_free(&r);
	FM_ASSERT(cli(&r, NULL, "jobs", "create", "--file", "/nonexistent/job.json", NULL) == 4, SHOW(r));
	run_free(&r);
	/* valid JSON the plugin refuses (an update without artifact): refused */
	FM_ASSERT(cli(&r, NULL, "jobs", "create", "--type", "update", "--document", "{\"version\":\"1.0.0\"}", "--devices", "x",
				NULL) == 1, "update job without artifact: " SHOW(r));
	FM_ASSERT(strstr(r.err, "BAD_REQUEST") != NULL, SHOW(r));
	run_free(&r);
	/* a job file that works */
	write_text(path_in(good, sizeof(good), "job.json"),
			"{\"jobId\":\"cli-job-file\",\"type\":\"config\",\"document\":{\"set\":{\"k\":\"v\"}},"
			"\"targets\":{\"devices\":[\"cli-offline-3\"]},\"rollout\":{\"maxPerMinute\":5}}\n");
	FM_ASSERT(cli(&r, NULL, "--json", "jobs", "create", "--file", good, "--description", "from a file", NULL) == 0, SHOW(r));
	run_free(&r);
	FM_ASSERT(cli(&r, NULL, "jobs", "cancel", "cli-job-file", NULL) == 0, SHOW(r));
	run_free(&r);
}

/* Settings: flags > environment > config file > defaults. */
static void test_cli_config_precedence(void)
{
	char cfg[320], yaml[256], good_port[32], bad_env[48], cfg_env[400];
	struct cli_opts noport = { NULL, true };
	const char *env_bad[] = { bad_env, NULL };
	const char *env_cfg[] = { cfg_env, NULL };
	struct cli_opts with_bad_env = { env_bad, true };
	struct cli_opts with_cfg_env = { env_cfg, true };
	struct cli_run r;

	snprintf(yaml, sizeof(yaml), "broker:\n  port: %d\n  username: ops\n  timeout_ms: 4000\n", g_broker.port);
	write_text(path_in(cfg, sizeof(cfg), "cli.yaml"), yaml);
	snprintf(good_port, sizeof(good_port), "%d", g_broker.port);
	snprintf(bad_env, sizeof(bad_env), "FLEETMQ_PORT=%d", closed_port());
	snprintf(cfg_env, sizeof(cfg_env), "FLEETMQ_CONFIG=%s", cfg);

	FM_ASSERT(cli(&r, &noport, "--config", cfg, "jobs", "list", NULL) == 0, "config file port: " SHOW(r));
	run_free(&r);
	FM_ASSERT(cli(&r, &with_cfg_env, "jobs", "list", NULL) == 0, "FLEETMQ_CONFIG: " SHOW(r));
	run_free(&r);
	FM_ASSERT(cli(&r, &with_bad_env, "--config", cfg, "jobs", "list", NULL) == 3, "env must beat the file: " SHOW(r));
	run_free(&r);
	FM_ASSERT(cli(&r, &with_bad_env, "--config", cfg, "--port", good_port, "jobs", "list", NULL) == 0,
			"flag must beat env: " SHOW(r));
	run_free(&r);
	write_text(cfg, "broker:\n  prot: 1\n");
	FM_ASSERT(cli(&r, &noport, "--config", cfg, "jobs", "list", NULL) == 4, "bad config file: " SHOW(r));
	FM_ASSERT(strstr(r.err, "broker.prot") != NULL, SHOW(r));
	run_free(&r);
}

/* ---- tests: artifacts and keys --------------------------------------------- */

static void test_cli_artifacts_keys_roundtrip(void)
{
	char store[320], priv[320], pub[320], priv2[320], pub2[320], payload[400], meta[420], src[320];
	struct cli_run r;
	cJSON *j;
	char key_id[32] = "";
	FILE *f;
	int i;

	path_in(store, sizeof(store), "store");
	mkdir(store, 0755);
	path_in(priv, sizeof(priv), "release.key.pem");
	path_in(pub, sizeof(pub), "release.pub.pem");
	path_in(priv2, sizeof(priv2), "other.key.pem");
	path_in(pub2, sizeof(pub2), "other.pub.pem");
	path_in(src, sizeof(src), "fw-build.bin");
	snprintf(payload, sizeof(payload), "%s/fw-2.0.0.bin", store);
	snprintf(meta, sizeof(meta), "%s.json", payload);
	f = fopen(src, "wb");
	FM_ASSERT_FATAL(f != NULL, "cannot write %s", src);
	for(i = 0; i < 70000; i++) fputc((i * 7919) & 0xff, f);
	fclose(f);

	FM_ASSERT(cli(&r, NULL, "--json", "keys", "generate", priv, pub, NULL) == 0, SHOW(r));
	j = out_json(&r);
	snprintf(key_id, sizeof(key_id), "%s", jstr(j, "keyId"));
	FM_ASSERT(strlen(key_id) == 16, "key id: " SHOW(r));
	cJSON_Delete(j);
	run_free(&r);
	FM_ASSERT(cli(&r, NULL, "keys", "generate", priv, pub, NULL) == 4, "keys must not be overwritten: " SHOW(r));
	run_free(&r);
	FM_ASSERT(cli(&r, NULL, "keys", "generate", priv2, pub2, NULL) == 0, SHOW(r));
	run_free(&r);
	FM_ASSERT(cli(&r, NULL, "keys", "id", priv, NULL) == 0 && strstr(r.out, key_id), SHOW(r));
	run_free(&r);

	FM_ASSERT(cli(&r, NULL, "artifacts", "add", src, "--name", "fw-2.0.0.bin", "--version", "2.0.0", "--device-types",
				"e2e-sensor,gw", "--hw-revisions", "r1", "--critical", "--key", priv, "--dir", store, NULL) == 0, SHOW(r));
	run_free(&r);
	j = NULL;
	{
		char *text = slurp(meta);
		j = cJSON_Parse(text);
		free(text);
	}
	FM_ASSERT(j != NULL, "no metadata file %s", meta);
	FM_ASSERT_STR_EQ(jstr(j, "name"), "fw-2.0.0.bin");
	FM_ASSERT_STR_EQ(jstr(j, "keyId"), key_id);
	FM_ASSERT(jnum(j, "size", 0) == 70000 && strlen(jstr(j, "sha256")) == 64 && jstr(j, "signature")[0], "metadata");
	FM_ASSERT(cJSON_IsTrue(fm_json_path(j, "critical")), "critical flag lost");
	cJSON_Delete(j);
	FM_ASSERT(cli(&r, NULL, "artifacts", "add", src, "--name", "fw-2.0.0.bin", "--version", "2.0.0", "--device-types",
				"e2e-sensor", "--key", priv, "--dir", store, NULL) == 4, "artifacts are not replaced: " SHOW(r));
	run_free(&r);
	FM_ASSERT(cli(&r, NULL, "artifacts", "add", src, "--name", "fw-x.bin", "--version", "v2", "--device-types", "a",
				"--key", priv, "--dir", store, NULL) == 2, "bad version: " SHOW(r));
	run_free(&r);

	FM_ASSERT(cli(&r, NULL, "--json", "artifacts", "list", "--dir", store, NULL) == 0, SHOW(r));
	j = out_json(&r);
	FM_ASSERT(cJSON_GetArraySize(fm_json_path(j, "artifacts")) == 1, SHOW(r));
	FM_ASSERT_STR_EQ(jstr(cJSON_GetArrayItem(fm_json_path(j, "artifacts"), 0), "status"), "ok");
	cJSON_Delete(j);
	run_free(&r);

	FM_ASSERT(cli(&r, NULL, "keys", "verify", meta, "--key", pub2, "--key", pub, NULL) == 0, "verify: " SHOW(r));
	run_free(&r);
	FM_ASSERT(cli(&r, NULL, "keys", "verify", meta, "--key", pub2, NULL) == 4, "wrong key must fail: " SHOW(r));
	run_free(&r);

	/* an update job from the store carries the signed metadata */
	FM_ASSERT(cli(&r, NULL, "--json", "jobs", "create", "--id", "cli-up", "--artifact", "fw-2.0.0.bin", "--artifacts-dir",
				store, "--all", "--dry-run", NULL) == 0, SHOW(r));
	j = out_json(&r);
	FM_ASSERT_STR_EQ(jstr(j, "type"), "update");
	FM_ASSERT_STR_EQ(jstr(j, "document.artifact"), "fw-2.0.0.bin");
	FM_ASSERT_STR_EQ(jstr(j, "document.keyId"), key_id);
	cJSON_Delete(j);
	run_free(&r);

	/* tamper with one byte of the payload: verification fails */
	f = fopen(payload, "r+b");
	FM_ASSERT_FATAL(f != NULL, "cannot open %s", payload);
	fseek(f, 1000, SEEK_SET);
	fputc(0xAA ^ ((1000 * 7919) & 0xff), f);
	fclose(f);
	FM_ASSERT(cli(&r, NULL, "keys", "verify", meta, "--key", pub, NULL) == 4, "tampered payload: " SHOW(r));
	FM_ASSERT(strstr(r.err, "does not match") != NULL, SHOW(r));
	run_free(&r);
	FM_ASSERT(cli(&r, NULL, "artifacts", "list", "--dir", store, "--key", pub, NULL) == 4, SHOW(r));
	run_free(&r);

	/* tamper with the metadata (version): the signature no longer holds */
	FM_ASSERT(cli(&r, NULL, "keys", "sign", meta, "--key", priv, "--payload", payload, NULL) == 0, SHOW(r));
	run_free(&r);
	FM_ASSERT(cli(&r, NULL, "keys", "verify", meta, "--key", pub, NULL) == 0, "re-signed: " SHOW(r));
	run_free(&r);
	{
		char *text = slurp(meta), *p = strstr(text, "\"2.0.0\"");
		if(p) p[1] = '9';
		write_text(meta, text);
		free(text);
	}
	FM_ASSERT(cli(&r, NULL, "keys", "verify", meta, "--key", pub, NULL) == 4, "tampered metadata: " SHOW(r));
	FM_ASSERT(strstr(r.err, "signature") != NULL, SHOW(r));
	run_free(&r);
}

int main(void)
{
	static const struct fm_test tests[] = {
		{ "test_cli_usage_errors_exit_2", test_cli_usage_errors_exit_2 },
		{ "test_cli_devices_list_json", test_cli_devices_list_json },
		{ "test_cli_shadow_set_and_get", test_cli_shadow_set_and_get },
		{ "test_cli_jobs_create_watch_completes", test_cli_jobs_create_watch_completes },
		{ "test_cli_jobs_watch_failure_exit_5", test_cli_jobs_watch_failure_exit_5 },
		{ "test_cli_jobs_cancel", test_cli_jobs_cancel },
		{ "test_cli_jobs_watch_until_timeout_exit_3", test_cli_jobs_watch_until_timeout_exit_3 },
		{ "test_cli_errors", test_cli_errors },
		{ "test_cli_config_precedence", test_cli_config_precedence },
		{ "test_cli_artifacts_keys_roundtrip", test_cli_artifacts_keys_roundtrip },
		{ NULL, NULL },
	};
	return fm_cunit_main("e2e_cli", suite_init, suite_cleanup, tests);
}
