/*
 * handler_ab.c - the built-in A/B directory update handler.
 *
 * A stand-in for a dual-partition (A/B) firmware layout that needs no
 * bootloader, for testing and for applications that live in a directory:
 *
 *   <slots_dir>/a/            slot A: <artifact name> + VERSION
 *   <slots_dir>/b/            slot B
 *   <slots_dir>/current  ->  a | b     (relative symlink = the "boot" slot)
 *   <slots_dir>/committed         name of the last committed slot
 *
 * Steps (each idempotent, so the executor can redo one after a crash):
 *   Install   the target is the slot `current` does not point to; it is
 *             wiped, the payload copied in under the artifact's name, and
 *             VERSION written; everything fsync'd. hstate records
 *             {"previous": <current slot>, "target": <other slot>}.
 *   Reboot    switch `current` to the target atomically: a symlink under a
 *             temporary name, rename() over `current`, fsync of slots_dir.
 *   HealthCheck  update.health_check via /bin/sh with a timeout, "$1" and
 *             $FLEETMQ_SLOT_DIR = the new slot directory; none = healthy.
 *   Commit    write `committed` (atomically) = the target.
 *   Rollback  switch `current` back to hstate.previous.
 * The installed version is <slots_dir>/current/VERSION.
 *
 * Must never: write into the slot `current` points to, or leave `current`
 * missing or dangling at any instant.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"
#include "fleetmq_alloc.h"

static int path_of(char *buf, size_t len, const struct agent_ab_handler *h, const char *leaf)
{
	return snprintf(buf, len, "%s/%s", h->slots_dir, leaf) >= (int)len ? -1 : 0;
}

void agent__ab_current_slot(const struct agent_ab_handler *h, char *buf, size_t size)
{
	char link[PATH_MAX], target[64];
	ssize_t n;

	buf[0] = '\0';
	if(path_of(link, sizeof(link), h, "current") != 0) return;
	n = readlink(link, target, sizeof(target) - 1);
	if(n <= 0) return;
	target[n] = '\0';
	if(!strcmp(target, "a") || !strcmp(target, "b")) snprintf(buf, size, "%s", target);
}

/* Point `current` at slot (atomically). */
static int switch_to(const struct agent_ab_handler *h, const char *slot, char *err, size_t errlen)
{
	char link[PATH_MAX], tmp[PATH_MAX];

	if(path_of(link, sizeof(link), h, "current") != 0 || path_of(tmp, sizeof(tmp), h, "current.tmp") != 0){
		snprintf(err, errlen, "slots_dir path too long");
		return -1;
	}
	unlink(tmp);
	if(symlink(slot, tmp) != 0){
		snprintf(err, errlen, "%s: cannot create symlink: %s", tmp, strerror(errno));
		return -1;
	}
	if(rename(tmp, link) != 0){
		snprintf(err, errlen, "%s: cannot rename to %s: %s", tmp, link, strerror(errno));
		unlink(tmp);
		return -1;
	}
	if(agent__fsync_dir(h->slots_dir) != 0){
		snprintf(err, errlen, "%s: fsync: %s", h->slots_dir, strerror(errno));
		return -1;
	}
	return 0;
}

int agent__ab_init(struct agent_ab_handler *h, const char *slots_dir, const char *health_cmd, int health_timeout_ms,
		char *err, size_t errlen)
{
	char path[PATH_MAX], cur[8];

	memset(h, 0, sizeof(*h));
	h->slots_dir = fm_strdup(slots_dir);
	h->health_cmd = health_cmd && health_cmd[0] ? fm_strdup(health_cmd) : NULL;
	h->health_timeout_ms = health_timeout_ms;
	if(!h->slots_dir || (health_cmd && health_cmd[0] && !h->health_cmd)){
		snprintf(err, errlen, "out of memory");
		agent__ab_clear(h);
		return -1;
	}
	if(path_of(path, sizeof(path), h, "a") != 0 || agent__mkdir_p(path, 0755) != 0
			|| path_of(path, sizeof(path), h, "b") != 0 || agent__mkdir_p(path, 0755) != 0){
		snprintf(err, errlen, "%s: cannot create the slot directories: %s", slots_dir, strerror(errno));
		agent__ab_clear(h);
		return -1;
	}
	agent__ab_current_slot(h, cur, sizeof(cur));
	if(!cur[0] && switch_to(h, "a", err, errlen) != 0){
		agent__ab_clear(h);
		return -1;
	}
	return 0;
}

void agent__ab_clear(struct agent_ab_handler *h)
{
	if(!h) return;
	fm_free(h->slots_dir);
	fm_free(h->health_cmd);
	memset(h, 0, sizeof(*h));
}

static const char *hstr(const cJSON *hstate, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(hstate, key);
	return cJSON_IsString(v) && (!strcmp(v->valuestring, "a") || !strcmp(v->valuestring, "b")) ? v->valuestring : NULL;
}

static void hset(cJSON *hstate, const char *key, const char *value)
{
	cJSON_DeleteItemFromObjectCaseSensitive(hstate, key);
	cJSON_AddStringToObject(hstate, key, value);
}

static int ab_install(void *ctx, const char *payload, const struct fleetmq_artifact_meta *m, cJSON *hstate,
		char *err, size_t errlen)
{
	struct agent_ab_handler *h = ctx;
	char cur[8], dir[PATH_MAX], dst[PATH_MAX + 200], ver[PATH_MAX + 16], text[128];
	const char *target;

	agent__ab_current_slot(h, cur, sizeof(cur));
	if(!cur[0]){
		snprintf(err, errlen, "%s/current is missing or invalid", h->slots_dir);
		return -1;
	}
	target = !strcmp(cur, "a") ? "b" : "a";
	hset(hstate, "previous", cur);
	hset(hstate, "target", target);
	if(path_of(dir, sizeof(dir), h, target) != 0){
		snprintf(err, errlen, "slots_dir path too long");
		return -1;
	}
	/* wipe the inactive slot: a redo after a crash starts clean */
	if(agent__rm_rf(dir) != 0 || agent__mkdir_p(dir, 0755) != 0){
		snprintf(err, errlen, "%s: cannot wipe the inactive slot: %s", dir, strerror(errno));
		return -1;
	}
	snprintf(dst, sizeof(dst), "%s/%s", dir, m->name);
	if(agent__copy_file(payload, dst, err, errlen) != 0) return -1;
	snprintf(ver, sizeof(ver), "%s/VERSION", dir);
	snprintf(text, sizeof(text), "%s\n", m->version);
	if(agent__write_atomic(ver, text, strlen(text), 0644, err, errlen) != 0) return -1;
	if(agent__fsync_dir(dir) != 0 || agent__fsync_dir(h->slots_dir) != 0){
		snprintf(err, errlen, "%s: fsync: %s", dir, strerror(errno));
		return -1;
	}
	return 0;
}

static int ab_reboot(void *ctx, const char *payload, cJSON *hstate, char *err, size_t errlen)
{
	struct agent_ab_handler *h = ctx;
	const char *target = hstr(hstate, "target");

	(void)payload;
	if(!target){
		snprintf(err, errlen, "no target slot recorded (install did not run)");
		return -1;
	}
	return switch_to(h, target, err, errlen);
}

static int ab_health(void *ctx, const char *payload, cJSON *hstate, char *err, size_t errlen)
{
	struct agent_ab_handler *h = ctx;
	char slot_dir[PATH_MAX], env_slot[PATH_MAX + 32], output[200];
	const char *args[2] = { slot_dir, NULL };
	const char *env[2] = { env_slot, NULL };
	const char *target = hstr(hstate, "target");
	int rc;

	(void)payload;
	if(!h->health_cmd) return 0;
	snprintf(slot_dir, sizeof(slot_dir), "%s/%s", h->slots_dir, target ? target : "current");
	snprintf(env_slot, sizeof(env_slot), "FLEETMQ_SLOT_DIR=%s", slot_dir);
	rc = agent__run_shell(h->health_cmd, args, env, h->health_timeout_ms, output, sizeof(output));
	if(rc == 0) return 0;
	if(rc == -2) snprintf(err, errlen, "health check timed out after %d ms", h->health_timeout_ms);
	else if(rc == -1) snprintf(err, errlen, "health check could not be started");
	else snprintf(err, errlen, "health check exited with %d%s%.150s", rc, output[0] ? ": " : "", agent__flatten(output));
	return -1;
}

static int ab_commit(void *ctx, const char *payload, cJSON *hstate, char *err, size_t errlen)
{
	struct agent_ab_handler *h = ctx;
	const char *target = hstr(hstate, "target");
	char path[PATH_MAX], cur[8];

	(void)payload;
	if(!target){
		snprintf(err, errlen, "no target slot recorded");
		return -1;
	}
	agent__ab_current_slot(h, cur, sizeof(cur));
	if(strcmp(cur, target) != 0){
		/* e.g. a real bootloader fell back: never commit a slot we do not run */
		snprintf(err, errlen, "running slot is '%s', not the new slot '%s'", cur, target);
		return -1;
	}
	if(path_of(path, sizeof(path), h, "committed") != 0){
		snprintf(err, errlen, "slots_dir path too long");
		return -1;
	}
	return agent__write_atomic(path, target, strlen(target), 0644, err, errlen);
}

static int ab_rollback(void *ctx, const char *payload, cJSON *hstate, char *err, size_t errlen)
{
	struct agent_ab_handler *h = ctx;
	const char *previous = hstr(hstate, "previous");
	char cur[8];

	(void)payload;
	agent__ab_current_slot(h, cur, sizeof(cur));
	if(!previous) return 0;        /* install never ran: nothing was switched */
	if(!strcmp(cur, previous)) return agent__fsync_dir(h->slots_dir) == 0 ? 0 : -1;
	return switch_to(h, previous, err, errlen);
}

static void ab_current_version(void *ctx, char *buf, size_t size)
{
	struct agent_ab_handler *h = ctx;
	char path[PATH_MAX], *text = NULL;
	size_t n;

	buf[0] = '\0';
	if(path_of(path, sizeof(path), h, "current/VERSION") != 0) return;
	if(agent__read_file(path, 4096, &text, &n) != 0) return;
	while(n > 0 && (text[n - 1] == '\n' || text[n - 1] == '\r' || text[n - 1] == ' ')) text[--n] = '\0';
	snprintf(buf, size, "%s", text);
	fm_free(text);
}

const struct agent_handler_ops agent__ab_ops = {
	ab_install, ab_reboot, ab_health, ab_commit, ab_rollback, ab_current_version,
};
