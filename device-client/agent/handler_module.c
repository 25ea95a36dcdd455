/*
 * handler_module.c - external update modules, in the spirit of Mender's
 * update modules: one executable (update.handler) that knows how to
 * install a kind of artifact, called once per step:
 *
 *     <handler> Install     <artifact-file> <state-dir>
 *     <handler> Reboot      <artifact-file> <state-dir>
 *     <handler> HealthCheck <artifact-file> <state-dir>
 *     <handler> Commit      <artifact-file> <state-dir>
 *     <handler> Rollback    <artifact-file> <state-dir>
 *
 * Exit status 0 = the step succeeded; anything else (or running longer than
 * update.step_timeout_ms) = it failed, and the first 200 bytes of its
 * output go into the job's status details. <state-dir> is
 * <agent state_dir>/update-module, kept across steps and restarts for the
 * module's own bookkeeping. Every step must be idempotent: after a crash
 * the agent repeats the step it was in (Install, Commit, Rollback) or rolls
 * back (Reboot, HealthCheck). The environment carries FLEETMQ_ARTIFACT_NAME
 * and FLEETMQ_ARTIFACT_VERSION.
 *
 * A module whose Reboot really reboots the device is declared with
 * update.handler_reboots: true (see update.c for how the restart is then
 * told apart from a crash). After the module's HealthCheck, the agent also
 * runs update.health_check if configured. On Commit the agent records the
 * installed version in <state_dir>/installed-version (the only version
 * source it has for a module).
 *
 * Must never: run the module through a shell (no quoting issues), or wait
 * for it without a limit.
 */
#include <stdio.h>
#include <string.h>

#include "agent.h"
#include "fleetmq_alloc.h"

static int step(struct agent_module_handler *h, const char *name, const char *payload, const cJSON *hstate,
		char *err, size_t errlen)
{
	const char *argv[5] = { h->path, name, payload, h->work_dir, NULL };
	const cJSON *n = cJSON_GetObjectItemCaseSensitive(hstate, "name");
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(hstate, "version");
	char env_name[200], env_version[100], output[200];
	const char *env[3] = { env_name, env_version, NULL };
	int rc;

	snprintf(env_name, sizeof(env_name), "FLEETMQ_ARTIFACT_NAME=%s", cJSON_IsString(n) ? n->valuestring : "");
	snprintf(env_version, sizeof(env_version), "FLEETMQ_ARTIFACT_VERSION=%s", cJSON_IsString(v) ? v->valuestring : "");
	/* run through the shell runner only for the environment: exec "$0" "$@" */
	rc = agent__run_shell("exec \"$@\"", argv, env, h->step_timeout_ms, output, sizeof(output));
	if(rc == 0) return 0;
	if(rc == -2) snprintf(err, errlen, "update module %s timed out after %d ms", name, h->step_timeout_ms);
	else if(rc == -1) snprintf(err, errlen, "update module %s could not be started", name);
	else snprintf(err, errlen, "update module %s exited with %d%s%.150s", name, rc, output[0] ? ": " : "", agent__flatten(output));
	return -1;
}

static void hset(cJSON *hstate, const char *key, const char *value)
{
	cJSON_DeleteItemFromObjectCaseSensitive(hstate, key);
	cJSON_AddStringToObject(hstate, key, value);
}

static int mod_install(void *ctx, const char *payload, const struct fleetmq_artifact_meta *m, cJSON *hstate,
		char *err, size_t errlen)
{
	struct agent_module_handler *h = ctx;

	hset(hstate, "name", m->name);
	hset(hstate, "version", m->version);
	if(agent__mkdir_p(h->work_dir, 0700) != 0){
		snprintf(err, errlen, "%s: cannot create", h->work_dir);
		return -1;
	}
	return step(h, "Install", payload, hstate, err, errlen);
}

static int mod_reboot(void *ctx, const char *payload, cJSON *hstate, char *err, size_t errlen)
{
	return step(ctx, "Reboot", payload, hstate, err, errlen);
}

static int mod_health(void *ctx, const char *payload, cJSON *hstate, char *err, size_t errlen)
{
	struct agent_module_handler *h = ctx;
	char output[200];
	int rc;

	if(step(h, "HealthCheck", payload, hstate, err, errlen) != 0) return -1;
	if(!h->health_cmd) return 0;
	rc = agent__run_shell(h->health_cmd, NULL, NULL, h->health_timeout_ms, output, sizeof(output));
	if(rc == 0) return 0;
	if(rc == -2) snprintf(err, errlen, "health check timed out after %d ms", h->health_timeout_ms);
	else snprintf(err, errlen, "health check exited with %d%s%.150s", rc, output[0] ? ": " : "", agent__flatten(output));
	return -1;
}

static int mod_commit(void *ctx, const char *payload, cJSON *hstate, char *err, size_t errlen)
{
	struct agent_module_handler *h = ctx;
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(hstate, "version");
	char text[100];

	if(step(h, "Commit", payload, hstate, err, errlen) != 0) return -1;
	if(!cJSON_IsString(v)) return 0;
	snprintf(text, sizeof(text), "%s\n", v->valuestring);
	return agent__write_atomic(h->version_file, text, strlen(text), 0644, err, errlen);
}

static int mod_rollback(void *ctx, const char *payload, cJSON *hstate, char *err, size_t errlen)
{
	return step(ctx, "Rollback", payload, hstate, err, errlen);
}

static void mod_current_version(void *ctx, char *buf, size_t size)
{
	struct agent_module_handler *h = ctx;
	char *text = NULL;
	size_t n = 0;

	buf[0] = '\0';
	if(agent__read_file(h->version_file, 4096, &text, &n) != 0) return;
	while(n > 0 && (text[n - 1] == '\n' || text[n - 1] == '\r' || text[n - 1] == ' ')) text[--n] = '\0';
	snprintf(buf, size, "%s", text);
	fm_free(text);
}

const struct agent_handler_ops agent__module_ops = {
	mod_install, mod_reboot, mod_health, mod_commit, mod_rollback, mod_current_version,
};

int agent__module_init(struct agent_module_handler *h, const char *path, const char *state_dir,
		const char *health_cmd, int health_timeout_ms, int step_timeout_ms, char *err, size_t errlen)
{
	char buf[4200];

	memset(h, 0, sizeof(*h));
	h->path = fm_strdup(path);
	snprintf(buf, sizeof(buf), "%s/update-module", state_dir);
	h->work_dir = fm_strdup(buf);
	snprintf(buf, sizeof(buf), "%s/installed-version", state_dir);
	h->version_file = fm_strdup(buf);
	h->health_cmd = health_cmd && health_cmd[0] ? fm_strdup(health_cmd) : NULL;
	h->health_timeout_ms = health_timeout_ms;
	h->step_timeout_ms = step_timeout_ms;
	if(!h->path || !h->work_dir || !h->version_file || (health_cmd && health_cmd[0] && !h->health_cmd)){
		snprintf(err, errlen, "out of memory");
		agent__module_clear(h);
		return -1;
	}
	return 0;
}

void agent__module_clear(struct agent_module_handler *h)
{
	if(!h) return;
	fm_free(h->path);
	fm_free(h->work_dir);
	fm_free(h->health_cmd);
	fm_free(h->version_file);
	memset(h, 0, sizeof(*h));
}
